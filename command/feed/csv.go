package feed

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// CSVColumns are the columns of a CSV feed (API.md). The header must name each
// exactly once (in any order; surrounding spaces ignored) and nothing else.
var CSVColumns = []string{
	"program_external_id", "program_title", "program_description", "category", "language", "tags",
	"program_published", "episode_external_id", "episode_title", "number", "season",
	"episode_description", "duration_seconds", "episode_published",
}

// Column indexes into CSVColumns.
const (
	colProgramExternalID = iota
	colProgramTitle
	colProgramDescription
	colCategory
	colLanguage
	colTags
	colProgramPublished
	colEpisodeExternalID
	colEpisodeTitle
	colNumber
	colSeason
	colEpisodeDescription
	colDuration
	colEpisodePublished
)

// programColumns are the columns every row of one program must repeat identically.
var programColumns = []int{colProgramTitle, colProgramDescription, colCategory, colLanguage, colTags, colProgramPublished}

// episodeColumns are the columns of a row's episode.
var episodeColumns = []int{colEpisodeExternalID, colEpisodeTitle, colNumber, colSeason, colEpisodeDescription, colDuration, colEpisodePublished}

// csvAhead is csv.Reader's internal read-ahead (bufio's default size).
const csvAhead = 4096

// newCSV reads and checks the header at once (ErrInvalidFeed when a column is
// missing, unknown or repeated), then groups consecutive rows with the same
// program_external_id into one item.
//
// Decisions, since CSV cannot say "absent": an empty optional cell
// (program_description, tags, program_published, season, episode_description,
// episode_published) leaves the stored value as it is, so a CSV feed cannot clear a
// description. A row with an empty episode_external_id and empty episode columns
// carries only its program. The program columns of a program's later rows must equal
// its first row's, or the program fails. A program_external_id that comes back after
// other programs starts a new item (applied after the earlier one: items of one
// external id are processed in feed order). A CSV syntax error or an oversized
// record ends the feed, since quoted fields make the rest of the input ambiguous;
// the program whose rows were being read then fails too, as it may be incomplete.
func newCSV(br *bufio.Reader, lim Limits) (func() (Item, error), error) {
	src := &boundedReader{r: br}
	allow := int64(lim.MaxLineBytes) + csvAhead
	src.limit = allow
	r := csv.NewReader(src)
	r.FieldsPerRecord = -1
	r.ReuseRecord = true

	header, err := r.Read()
	switch {
	case errors.Is(err, io.EOF):
		return nil, fmt.Errorf("empty body, want a CSV header: %w", ErrInvalidFeed)
	case errors.Is(err, errTooLarge):
		return nil, fmt.Errorf("the header line is larger than %d bytes: %w", lim.MaxLineBytes, ErrInvalidFeed)
	case err != nil:
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("header: %v: %w", pe.Err, ErrInvalidFeed)
		}
		return nil, fmt.Errorf("read feed: %w", err)
	}
	index, err := headerIndex(header)
	if err != nil {
		return nil, err
	}
	headerEnd, _ := r.FieldPos(len(header) - 1)

	g := &csvGroups{lim: lim, index: index, width: len(header)}
	var pending *csvGroup // the group being collected
	eof := false
	lastLine := int64(headerEnd) // the last line read so far
	var stop error               // the error that ends the feed, once the pending item is out
	return func() (Item, error) {
		for !eof && stop == nil {
			src.limit = src.read + allow
			rec, err := r.Read()
			if errors.Is(err, io.EOF) {
				eof = true
				break
			}
			if err != nil {
				var pe *csv.ParseError
				switch {
				case errors.Is(err, errTooLarge):
					stop = &FeedError{Line: lastLine + 1, Message: fmt.Sprintf("a record is larger than %d bytes", lim.MaxLineBytes)}
				case errors.As(err, &pe) && errors.Is(pe.Err, errTooLarge):
					stop = &FeedError{Line: int64(pe.StartLine), Message: fmt.Sprintf("a record is larger than %d bytes", lim.MaxLineBytes)}
				case errors.As(err, &pe):
					stop = &FeedError{Line: int64(pe.StartLine), Message: "invalid CSV: " + pe.Err.Error()}
				default:
					stop = &FeedError{Line: lastLine + 1, Message: "reading the feed failed", Err: err}
				}
				break
			}
			l, _ := r.FieldPos(0)
			line := int64(l)
			end, _ := r.FieldPos(len(rec) - 1)
			lastLine = int64(end)
			key := ""
			if len(rec) > index[colProgramExternalID] {
				key = rec[index[colProgramExternalID]]
			}
			if pending != nil && key == pending.externalID {
				if len(rec) != g.width {
					pending.problems = append(pending.problems, fmt.Sprintf("line %d has %d fields, the header %d", line, len(rec), g.width))
				} else {
					g.add(pending, rec, line)
				}
				continue
			}
			done := pending
			pending = g.start(rec, line)
			if done != nil {
				return done.item(), nil
			}
		}
		if pending != nil {
			done := pending
			pending = nil
			if stop != nil {
				// The feed broke off while this program's rows were being read:
				// the broken record may have been one of them, so the program is
				// not known to be whole and must not be applied.
				done.problems = append(done.problems, "the feed broke off before the program's rows were known to be complete")
			}
			return done.item(), nil
		}
		if stop != nil {
			return Item{}, stop
		}
		return Item{}, io.EOF
	}, nil
}

func headerIndex(header []string) ([]int, error) {
	pos := make(map[string]int, len(header))
	var problems []string
	for i, name := range header {
		name = strings.TrimSpace(name)
		if _, dup := pos[name]; dup {
			problems = append(problems, fmt.Sprintf("column %q appears twice", name))
			continue
		}
		pos[name] = i
	}
	index := make([]int, len(CSVColumns))
	for c, name := range CSVColumns {
		i, ok := pos[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("column %q is missing", name))
			continue
		}
		index[c] = i
		delete(pos, name)
	}
	for name := range pos {
		problems = append(problems, fmt.Sprintf("unknown column %q", truncate(strings.ToValidUTF8(name, "\uFFFD"), 100)))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("CSV header: %s (want the columns %s): %w", strings.Join(problems, "; "), strings.Join(CSVColumns, ","), ErrInvalidFeed)
	}
	return index, nil
}

// csvGroups builds items out of rows.
type csvGroups struct {
	lim   Limits
	index []int
	width int
}

// csvGroup is one program being collected from consecutive rows.
type csvGroup struct {
	line       int64
	externalID string
	first      []string // the first row's program cells, by column
	program    Program
	problems   []string
	bytes      int
	overflow   bool
}

func (g *csvGroups) cell(rec []string, col int) string { return rec[g.index[col]] }

func recordBytes(rec []string) int {
	n := 0
	for _, f := range rec {
		n += len(f) + 1
	}
	return n
}

// start begins a program with its first row.
func (g *csvGroups) start(rec []string, line int64) *csvGroup {
	grp := &csvGroup{line: line}
	if len(rec) != g.width {
		if len(rec) > g.index[colProgramExternalID] {
			grp.externalID = rec[g.index[colProgramExternalID]]
		}
		grp.problems = append(grp.problems, fmt.Sprintf("line %d has %d fields, the header %d", line, len(rec), g.width))
		return grp
	}
	grp.externalID = g.cell(rec, colProgramExternalID)
	grp.first = make([]string, len(CSVColumns))
	for _, c := range programColumns {
		grp.first[c] = g.cell(rec, c)
	}
	if !validUTF8(rec) {
		grp.problems = append(grp.problems, fmt.Sprintf("line %d: invalid UTF-8", line))
		return grp
	}
	p := &grp.program
	p.ExternalID = grp.externalID
	p.Title = g.cell(rec, colProgramTitle)
	p.Category = g.cell(rec, colCategory)
	p.Language = g.cell(rec, colLanguage)
	if v := g.cell(rec, colProgramDescription); v != "" {
		p.Description = &v
	}
	if v := g.cell(rec, colTags); v != "" {
		tags := strings.Split(v, "|")
		p.Tags = &tags
	}
	if v := g.cell(rec, colProgramPublished); v != "" {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			grp.problems = append(grp.problems, fmt.Sprintf("line %d: program_published: must be true or false", line))
		}
		p.Published = &b
	}
	g.add(grp, rec, line)
	return grp
}

// add takes a row's episode (the first row's too) into the group.
func (g *csvGroups) add(grp *csvGroup, rec []string, line int64) {
	grp.bytes += recordBytes(rec)
	if grp.overflow {
		return
	}
	if grp.bytes > g.lim.MaxItemBytes {
		grp.overflow = true
		grp.program.Episodes = nil
		grp.problems = append(grp.problems, fmt.Sprintf("the program's rows are larger than %d bytes together", g.lim.MaxItemBytes))
		return
	}
	if grp.first == nil {
		return // the first row was unusable; the group already failed
	}
	if !validUTF8(rec) {
		grp.problems = append(grp.problems, fmt.Sprintf("line %d: invalid UTF-8", line))
		return
	}
	for _, c := range programColumns {
		if g.cell(rec, c) != grp.first[c] {
			grp.problems = append(grp.problems, fmt.Sprintf("line %d: %s differs from the program's first row (line %d)", line, CSVColumns[c], grp.line))
		}
	}
	if g.cell(rec, colEpisodeExternalID) == "" {
		for _, c := range episodeColumns {
			if g.cell(rec, c) != "" {
				grp.problems = append(grp.problems, fmt.Sprintf("line %d: %s is set but episode_external_id is empty", line, CSVColumns[c]))
				return
			}
		}
		return // a row with the program only
	}
	e := Episode{
		ExternalID: g.cell(rec, colEpisodeExternalID),
		Title:      g.cell(rec, colEpisodeTitle),
		line:       line,
	}
	var problems []string
	intCell := func(col int, required bool) *int {
		v := strings.TrimSpace(g.cell(rec, col))
		if v == "" {
			if required {
				problems = append(problems, CSVColumns[col]+": is required")
			}
			return nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			problems = append(problems, CSVColumns[col]+": must be an integer")
			return nil
		}
		return &n
	}
	if n := intCell(colNumber, true); n != nil {
		e.Number = *n
	}
	e.Season = intCell(colSeason, false)
	if d := intCell(colDuration, true); d != nil {
		e.DurationSeconds = *d
	}
	if v := g.cell(rec, colEpisodeDescription); v != "" {
		e.Description = &v
	}
	if v := g.cell(rec, colEpisodePublished); v != "" {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			problems = append(problems, "episode_published: must be true or false")
		}
		e.Published = &b
	}
	if len(problems) > 0 {
		grp.problems = append(grp.problems, episodeRef(0, e)+": "+strings.Join(problems, "; "))
	}
	grp.program.Episodes = append(grp.program.Episodes, e)
}

func (grp *csvGroup) item() Item {
	return Item{Line: grp.line, ExternalID: grp.externalID, Program: grp.program, Problem: strings.Join(grp.problems, "; ")}
}

func validUTF8(rec []string) bool {
	for _, f := range rec {
		if !utf8.ValidString(f) {
			return false
		}
	}
	return true
}
