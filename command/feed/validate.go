package feed

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mediamesh/mediamesh/command/program"
)

const maxExternalIDRunes = program.MaxExternalIDLen

// validate checks a decoded item with the aggregate's input rules and returns its
// problems joined ("" when valid). Episode problems name the episode.
func validate(p *Program) string {
	var problems []string
	add := func(prefix string, err error) {
		if err == nil {
			return
		}
		var ve *program.ValidationError
		if !errors.As(err, &ve) {
			problems = append(problems, prefix+err.Error())
			return
		}
		for _, f := range ve.Fields {
			problems = append(problems, prefix+f.Field+": "+f.Message)
		}
	}
	if strings.TrimSpace(p.ExternalID) == "" {
		problems = append(problems, "external_id: is required")
	}
	np := program.NewProgram{Title: p.Title, Category: p.Category, Language: p.Language, ExternalID: p.ExternalID}
	if p.Description != nil {
		np.Description = *p.Description
	}
	if p.Tags != nil {
		np.Tags = *p.Tags
	}
	_, err := program.NormalizeNewProgram(np)
	add("", err)

	seenID := make(map[string]int, len(p.Episodes))
	type slot struct{ season, number int }
	seenSlot := make(map[slot]int, len(p.Episodes))
	for i, e := range p.Episodes {
		prefix := episodeRef(i, e) + ": "
		if strings.TrimSpace(e.ExternalID) == "" {
			problems = append(problems, prefix+"external_id: is required")
		} else if j, dup := seenID[e.ExternalID]; dup {
			problems = append(problems, fmt.Sprintf("%sexternal_id: the item already has it (%s)", prefix, episodeRef(j, p.Episodes[j])))
		} else {
			seenID[e.ExternalID] = i
		}
		ne := program.NewEpisode{Title: e.Title, Number: e.Number, DurationSeconds: e.DurationSeconds, ExternalID: e.ExternalID}
		if e.Description != nil {
			ne.Description = *e.Description
		}
		if e.Season != nil && *e.Season != 0 {
			ne.Season = *e.Season
		}
		norm, err := program.NormalizeNewEpisode(ne)
		add(prefix, err)
		if e.Season != nil && *e.Season == 0 {
			// A season given as 0 is invalid; only an absent one defaults to 1.
			_, err := program.NormalizeEpisodeChanges(program.EpisodeChanges{Season: e.Season})
			add(prefix, err)
		}
		if err == nil {
			s := slot{norm.Season, norm.Number}
			if j, dup := seenSlot[s]; dup {
				problems = append(problems, fmt.Sprintf("%snumber: season %d already has number %d in this item (%s)", prefix, s.season, s.number, episodeRef(j, p.Episodes[j])))
			} else {
				seenSlot[s] = i
			}
		}
	}
	return strings.Join(problems, "; ")
}

// episodeRef names an episode in messages: by its CSV line, or by its index in the
// item's episodes array, with its external id.
func episodeRef(i int, e Episode) string {
	id := truncate(strings.ToValidUTF8(e.ExternalID, "\uFFFD"), 4*maxExternalIDRunes)
	if e.line > 0 {
		return fmt.Sprintf("episode at line %d (external_id %q)", e.line, id)
	}
	return fmt.Sprintf("episodes[%d] (external_id %q)", i, id)
}
