// Package program is the Program aggregate: a program and the episodes it owns, one
// event stream ("program-{id}", events.ProgramStreamID). Keeping episodes inside the
// program's stream is what makes episode numbering and the publish rules atomic on
// every event store.
//
// The aggregate does no I/O. Behaviour methods (Create, Update, Publish, AddEpisode,
// …) check the rules and record events; a single apply switch is the only place that
// changes state, and the same switch rebuilds the aggregate from its stream (Load).
// The application layer (command/app) loads, calls one behaviour method, and appends
// Pending() with Version() as the expected version.
package program

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/mediamesh/mediamesh/events"
)

// Status is the publication state of a program or an episode.
type Status string

// The states of the publication machine. A program or an episode is created as a
// draft; published ⇄ unpublished; archived is final.
const (
	StatusDraft       Status = "draft"
	StatusPublished   Status = "published"
	StatusUnpublished Status = "unpublished"
	StatusArchived    Status = "archived"
)

// Recorded is a stored event as the aggregate replays it: the decoded event with the
// stream version and the time the store recorded for it. The times feed the editorial
// views (created_at, updated_at, published_at); the rules never look at them.
type Recorded struct {
	Event      events.Event
	Version    int64
	OccurredAt time.Time
}

// Episode is a read-only copy of one episode's state, as the editorial views show it.
type Episode struct {
	ID              string
	Title           string
	Number          int
	Season          int
	Description     string
	DurationSeconds int
	ExternalID      string
	Status          Status
	CreatedAt       time.Time
	UpdatedAt       time.Time
	// PublishedAt is the time the episode was first published, nil until then; it is
	// kept when the episode is unpublished and republished.
	PublishedAt *time.Time
}

// Program is the aggregate. Its zero value is not usable: get one from Create or Load.
type Program struct {
	id          string
	title       string
	description string
	category    string
	language    string
	tags        []string
	externalID  string
	status      Status
	createdAt   time.Time
	updatedAt   time.Time
	publishedAt *time.Time
	episodes    map[string]*Episode

	// version is the version of the stored stream the aggregate was loaded from;
	// pending events do not count until they are stored.
	version int64
	pending []events.Event
}

// NewProgram holds a new program's values as the command carries them.
type NewProgram struct {
	Title, Description, Category, Language string
	Tags                                   []string
	ExternalID                             string
}

// ProgramChanges holds the fields an update sets; a nil field is left as it is.
type ProgramChanges struct {
	Title, Description, Category, Language *string
	Tags                                   *[]string
}

// Create validates a new program and returns it with one pending ProgramCreated. The
// caller chooses the id (a UUIDv7 in the application layer). Every invalid field is
// listed in the returned *ValidationError. The stored title is trimmed, the language
// canonical, the tags de-duplicated and never nil.
func Create(id string, in NewProgram) (*Program, error) {
	if id == "" {
		return nil, errors.New("create program: empty id")
	}
	var fe fieldErrors
	title := normTitle(&fe, in.Title)
	checkDescription(&fe, in.Description)
	checkCategory(&fe, in.Category)
	lang := normLanguage(&fe, in.Language)
	tags := normTags(&fe, in.Tags)
	checkExternalID(&fe, in.ExternalID)
	if err := fe.err(); err != nil {
		return nil, err
	}
	p := newEmpty()
	err := p.record(events.ProgramCreated{
		ProgramID:   id,
		Title:       title,
		Description: in.Description,
		Category:    in.Category,
		Language:    lang,
		Tags:        tags,
		ExternalID:  in.ExternalID,
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Load rebuilds a program from its stream, oldest event first. The first event must
// be ProgramCreated; an event of a type the aggregate does not know is an error
// (it would otherwise be silently lost from the state).
func Load(history []Recorded) (*Program, error) {
	if len(history) == 0 {
		return nil, errors.New("load program: empty stream")
	}
	if _, ok := history[0].Event.(events.ProgramCreated); !ok {
		return nil, fmt.Errorf("load program: first event is %T, want ProgramCreated", history[0].Event)
	}
	p := newEmpty()
	for _, r := range history {
		if err := p.apply(r.Event, r.OccurredAt); err != nil {
			return nil, fmt.Errorf("load program %s at version %d: %w", p.id, r.Version, err)
		}
		p.version = r.Version
	}
	return p, nil
}

func newEmpty() *Program {
	return &Program{episodes: map[string]*Episode{}}
}

// Pending returns the events recorded since the aggregate was created or loaded, in
// order. They are to be appended with Version() as the expected version.
func (p *Program) Pending() []events.Event { return slices.Clone(p.pending) }

// Version is the version of the stored stream the aggregate was loaded from (0 for a
// program made by Create). Pending events are not counted.
func (p *Program) Version() int64 { return p.version }

// ID is the program's id.
func (p *Program) ID() string { return p.id }

// Title is the program's (trimmed) title.
func (p *Program) Title() string { return p.title }

// Description is the program's description.
func (p *Program) Description() string { return p.description }

// Category is the program's category slug.
func (p *Program) Category() string { return p.category }

// Language is the program's canonical BCP 47 language tag.
func (p *Program) Language() string { return p.language }

// Tags returns a copy of the program's tags; never nil.
func (p *Program) Tags() []string {
	out := make([]string, len(p.tags))
	copy(out, p.tags)
	return out
}

// ExternalID is the id of the program in the feed it came from, or "".
func (p *Program) ExternalID() string { return p.externalID }

// Status is the program's publication state.
func (p *Program) Status() Status { return p.status }

// CreatedAt is the time of the program's first event.
func (p *Program) CreatedAt() time.Time { return p.createdAt }

// UpdatedAt is the time of the stream's last event (an episode's change changes the
// program's version, so it counts as a change of the program too).
func (p *Program) UpdatedAt() time.Time { return p.updatedAt }

// PublishedAt is the time the program was first published, or nil; it is kept when
// the program is unpublished and republished.
func (p *Program) PublishedAt() *time.Time { return copyTime(p.publishedAt) }

// Episodes returns copies of the program's episodes (archived ones included),
// ordered by season, then number.
func (p *Program) Episodes() []Episode {
	out := make([]Episode, 0, len(p.episodes))
	for _, e := range p.episodes {
		out = append(out, copyEpisode(e))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Season != out[j].Season {
			return out[i].Season < out[j].Season
		}
		if out[i].Number != out[j].Number {
			return out[i].Number < out[j].Number
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Episode returns a copy of one episode and whether the program has it.
func (p *Program) Episode(id string) (Episode, bool) {
	e, ok := p.episodes[id]
	if !ok {
		return Episode{}, false
	}
	return copyEpisode(e), true
}

func copyEpisode(e *Episode) Episode {
	c := *e
	c.PublishedAt = copyTime(e.PublishedAt)
	return c
}

func copyTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	c := *t
	return &c
}

// Update sets the given fields. Only the fields whose (normalised) value differs from
// the current one go into the recorded ProgramUpdated; when none differs nothing is
// recorded. An archived program cannot be updated.
func (p *Program) Update(ch ProgramChanges) error {
	var fe fieldErrors
	ev := events.ProgramUpdated{ProgramID: p.id}
	changed := false
	if ch.Title != nil {
		if t := normTitle(&fe, *ch.Title); t != p.title {
			ev.Title, changed = &t, true
		}
	}
	if ch.Description != nil {
		checkDescription(&fe, *ch.Description)
		if d := *ch.Description; d != p.description {
			ev.Description, changed = &d, true
		}
	}
	if ch.Category != nil {
		checkCategory(&fe, *ch.Category)
		if c := *ch.Category; c != p.category {
			ev.Category, changed = &c, true
		}
	}
	if ch.Language != nil {
		if l := normLanguage(&fe, *ch.Language); l != p.language {
			ev.Language, changed = &l, true
		}
	}
	if ch.Tags != nil {
		if t := normTags(&fe, *ch.Tags); !slices.Equal(t, p.tags) {
			ev.Tags, changed = &t, true
		}
	}
	if err := fe.err(); err != nil {
		return err
	}
	if p.status == StatusArchived {
		return fmt.Errorf("update program %s: it is archived: %w", p.id, ErrInvalidState)
	}
	if !changed {
		return nil
	}
	return p.record(ev)
}

// Publish makes a draft or unpublished program published; publishing a published
// program records nothing; an archived program cannot be published.
func (p *Program) Publish() error {
	switch p.status {
	case StatusPublished:
		return nil
	case StatusArchived:
		return fmt.Errorf("publish program %s: it is archived: %w", p.id, ErrInvalidState)
	}
	return p.record(events.ProgramPublished{ProgramID: p.id})
}

// Unpublish hides a published program; an unpublished one records nothing; a draft
// (never published) or archived program cannot be unpublished.
func (p *Program) Unpublish() error {
	switch p.status {
	case StatusUnpublished:
		return nil
	case StatusPublished:
		return p.record(events.ProgramUnpublished{ProgramID: p.id})
	}
	return fmt.Errorf("unpublish program %s: it is %s: %w", p.id, p.status, ErrInvalidState)
}

// Archive retires the program for good from any state; archiving an archived program
// records nothing. Its episodes keep their own states (discovery hides them with
// their program), but they can no longer change.
func (p *Program) Archive() error {
	if p.status == StatusArchived {
		return nil
	}
	return p.record(events.ProgramArchived{ProgramID: p.id})
}

// record applies a new event and keeps it as pending. The time of a pending event is
// not known until it is stored, so it leaves the aggregate's times as they are.
func (p *Program) record(e events.Event) error {
	if err := p.apply(e, time.Time{}); err != nil {
		return err
	}
	p.pending = append(p.pending, e)
	return nil
}

// apply is the only place that changes the aggregate's state, for new events and for
// replayed ones alike. at is the event's stored time (zero for a pending event).
func (p *Program) apply(e events.Event, at time.Time) error {
	touch := func(created, updated *time.Time) {
		if at.IsZero() {
			return
		}
		if created != nil && created.IsZero() {
			*created = at
		}
		*updated = at
	}
	switch ev := e.(type) {
	case events.ProgramCreated:
		if p.id != "" {
			return errors.New("program created twice")
		}
		p.id = ev.ProgramID
		p.title = ev.Title
		p.description = ev.Description
		p.category = ev.Category
		p.language = ev.Language
		p.tags = slices.Clone(ev.Tags)
		if p.tags == nil {
			p.tags = []string{}
		}
		p.externalID = ev.ExternalID
		p.status = StatusDraft
		touch(&p.createdAt, &p.updatedAt)
		return nil
	case events.ProgramUpdated:
		if ev.Title != nil {
			p.title = *ev.Title
		}
		if ev.Description != nil {
			p.description = *ev.Description
		}
		if ev.Category != nil {
			p.category = *ev.Category
		}
		if ev.Language != nil {
			p.language = *ev.Language
		}
		if ev.Tags != nil {
			p.tags = slices.Clone(*ev.Tags)
			if p.tags == nil {
				p.tags = []string{}
			}
		}
	case events.ProgramPublished:
		p.status = StatusPublished
		if p.publishedAt == nil && !at.IsZero() {
			t := at
			p.publishedAt = &t
		}
	case events.ProgramUnpublished:
		p.status = StatusUnpublished
	case events.ProgramArchived:
		p.status = StatusArchived
	case events.EpisodeAdded:
		if _, dup := p.episodes[ev.EpisodeID]; dup {
			return fmt.Errorf("episode %s added twice", ev.EpisodeID)
		}
		ep := &Episode{
			ID:              ev.EpisodeID,
			Title:           ev.Title,
			Number:          ev.Number,
			Season:          ev.Season,
			Description:     ev.Description,
			DurationSeconds: ev.DurationSeconds,
			ExternalID:      ev.ExternalID,
			Status:          StatusDraft,
		}
		p.episodes[ev.EpisodeID] = ep
		touch(&ep.CreatedAt, &ep.UpdatedAt)
	case events.EpisodeUpdated:
		ep, err := p.episodeOf(ev.EpisodeID)
		if err != nil {
			return err
		}
		if ev.Title != nil {
			ep.Title = *ev.Title
		}
		if ev.Number != nil {
			ep.Number = *ev.Number
		}
		if ev.Season != nil {
			ep.Season = *ev.Season
		}
		if ev.Description != nil {
			ep.Description = *ev.Description
		}
		if ev.DurationSeconds != nil {
			ep.DurationSeconds = *ev.DurationSeconds
		}
		touch(nil, &ep.UpdatedAt)
	case events.EpisodePublished:
		ep, err := p.episodeOf(ev.EpisodeID)
		if err != nil {
			return err
		}
		ep.Status = StatusPublished
		if ep.PublishedAt == nil && !at.IsZero() {
			t := at
			ep.PublishedAt = &t
		}
		touch(nil, &ep.UpdatedAt)
	case events.EpisodeUnpublished:
		ep, err := p.episodeOf(ev.EpisodeID)
		if err != nil {
			return err
		}
		ep.Status = StatusUnpublished
		touch(nil, &ep.UpdatedAt)
	case events.EpisodeArchived:
		ep, err := p.episodeOf(ev.EpisodeID)
		if err != nil {
			return err
		}
		ep.Status = StatusArchived
		touch(nil, &ep.UpdatedAt)
	default:
		return fmt.Errorf("program stream cannot hold %T", e)
	}
	touch(nil, &p.updatedAt)
	return nil
}

func (p *Program) episodeOf(id string) (*Episode, error) {
	ep, ok := p.episodes[id]
	if !ok {
		return nil, fmt.Errorf("episode %s of program %s: %w", id, p.id, ErrEpisodeNotFound)
	}
	return ep, nil
}
