package ingest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"

	"github.com/mediamesh/mediamesh/command/feed"
)

// Word lists of the demo catalog. Changing them changes every seeded catalog, so
// append rather than edit (DemoFeed's output is stable for a seed only as long as
// they are).
var (
	demoCategories = []string{"news", "documentary", "drama", "comedy", "kids", "sports", "science", "history", "music", "food", "travel", "nature"}
	demoLanguages  = []string{"en", "en", "en", "en-GB", "fr", "de", "es", "pt-BR", "it", "nl", "sv", "ja"}
	demoAdjectives = []string{"Silent", "Hidden", "Golden", "Wild", "Northern", "Lost", "Secret", "Great", "Little", "Modern", "Ancient", "Midnight", "Urban", "Blue", "Last", "Open"}
	demoNouns      = []string{"Kitchen", "Frontier", "Planet", "Harbour", "Orchestra", "Mountains", "Detectives", "Garden", "Rivers", "Stadium", "Archive", "Islands", "Machines", "Streets", "Forest", "Newsroom"}
	demoForms      = []string{"The %s %s", "%s %s", "Inside the %s %s", "%s %s Diaries", "Chasing the %s %s", "%s %s Live"}
	demoEpisodes   = []string{"Beginnings", "The Crossing", "Night Shift", "Home Ground", "Breaking Point", "The Long Road", "First Light", "Storm Warning", "Echoes", "The Return", "Open Water", "Finale"}
	demoTags       = map[string][]string{
		"news":        {"politics", "world", "business", "daily"},
		"documentary": {"true-story", "investigation", "portrait", "archive"},
		"drama":       {"period", "crime", "family", "thriller"},
		"comedy":      {"sketch", "sitcom", "stand-up", "satire"},
		"kids":        {"animation", "learning", "adventure", "family"},
		"sports":      {"football", "tennis", "cycling", "highlights"},
		"science":     {"space", "physics", "biology", "technology"},
		"history":     {"ancient", "war", "empires", "biography"},
		"music":       {"live", "classical", "jazz", "concert"},
		"food":        {"cooking", "baking", "street-food", "competition"},
		"travel":      {"adventure", "cities", "road-trip", "culture"},
		"nature":      {"wildlife", "oceans", "climate", "birds"},
	}
)

// DemoFeed writes a demo catalog of programs as NDJSON (what `mediamesh seed
// --programs N` submits through the ingest path): every program and episode
// published, 2–6 episodes each (one or two seasons), a category with fitting tags,
// a language, titles and descriptions built from word lists. The same programs and
// seed give the same bytes, and external ids are "demo-NNNNNN" (episodes
// "demo-NNNNNN-sSeEE"), so seeding twice changes nothing and a larger N extends a
// smaller one (program i does not depend on N).
func DemoFeed(w io.Writer, programs int, seed int64) error {
	if programs < 0 {
		return fmt.Errorf("demo feed: %d programs", programs)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for i := range programs {
		if err := enc.Encode(demoProgram(i, seed)); err != nil {
			return fmt.Errorf("demo feed: program %d: %w", i, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("demo feed: %w", err)
	}
	return nil
}

// DemoExternalID is the external id of demo program i ("demo-000042"): what the
// seed looks the program up by to give it artwork.
func DemoExternalID(i int) string { return fmt.Sprintf("demo-%06d", i) }

// demoProgram is program i of a seed's catalog; each program has its own random
// source, so it does not depend on how many came before.
func demoProgram(i int, seed int64) feed.Program {
	r := rand.New(rand.NewPCG(uint64(seed), uint64(i)))
	pick := func(s []string) string { return s[r.IntN(len(s))] }
	cat := pick(demoCategories)
	adj, noun := pick(demoAdjectives), pick(demoNouns)
	title := fmt.Sprintf(pick(demoForms), adj, noun)
	if r.IntN(4) == 0 { // some titles repeat across programs, as real catalogs do: number them
		title = fmt.Sprintf("%s %d", title, 1+i%9)
	}
	n := 2 + r.IntN(5)
	seasons := 1 + r.IntN(2)
	desc := fmt.Sprintf("A %s series about %s %s, told in %d episodes.", cat, "the "+strings.ToLower(adj), strings.ToLower(noun), n)
	pool := demoTags[cat]
	ntags := 1 + r.IntN(3)
	tags := make([]string, 0, ntags+1)
	for _, j := range r.Perm(len(pool))[:ntags] {
		tags = append(tags, pool[j])
	}
	if r.IntN(5) == 0 {
		tags = append(tags, "award-winning")
	}
	yes := true
	p := feed.Program{
		ExternalID:  DemoExternalID(i),
		Title:       title,
		Category:    cat,
		Description: &desc,
		Language:    pick(demoLanguages),
		Tags:        &tags,
		Published:   &yes,
	}
	perSeason := (n + seasons - 1) / seasons
	for k := range n {
		season, number := 1+k/perSeason, 1+k%perSeason
		epTitle := demoEpisodes[(k+r.IntN(len(demoEpisodes)))%len(demoEpisodes)]
		epDesc := fmt.Sprintf("Season %d, episode %d of %s.", season, number, title)
		s := season
		p.Episodes = append(p.Episodes, feed.Episode{
			ExternalID:      fmt.Sprintf("%s-s%de%02d", p.ExternalID, season, number),
			Title:           epTitle,
			Number:          number,
			Season:          &s,
			Description:     &epDesc,
			DurationSeconds: 60 * (10 + r.IntN(51)), // 10–60 minutes
			Published:       &yes,
		})
	}
	return p
}
