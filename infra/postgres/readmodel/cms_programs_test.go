package readmodel_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/infra/postgres/readmodel"
	"github.com/mediamesh/mediamesh/projections/editorial"
	"github.com/mediamesh/mediamesh/query/app"
)

var base = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// program describes one seeded program: its title, external id and the status it
// ends in; program i's last event happens at base + i minutes, except that the
// "tie" programs share one instant (ordered by id then).
type program struct {
	title, externalID, status string
	at                        time.Time
}

func seed(t *testing.T) (*app.CMSProgramsHandler, map[string]program) {
	t.Helper()
	pool, _ := pgtest.NewDB(t)
	codec := events.NewCodec()
	progs := map[string]program{}
	var evs []events.Envelope
	pos := int64(0)
	add := func(id string, at time.Time, version int64, e events.Event) {
		typ, data, err := codec.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		pos++
		evs = append(evs, events.Envelope{EventID: fmt.Sprintf("e%d", pos), Type: typ, StreamID: events.ProgramStreamID(id),
			Version: version, Position: pos, OccurredAt: at, Data: data})
	}
	statuses := []string{"draft", "published", "unpublished", "archived"}
	for i := range 30 {
		id := fmt.Sprintf("0190d5a0-0000-7000-8000-%012d", i+1)
		title := fmt.Sprintf("Show %02d", i)
		switch i {
		case 3:
			title = "Nordic Noir"
		case 4:
			title = "the NORDIC coast"
		case 5:
			title = "100% Drama"
		case 6:
			title = "snake_case"
		}
		at := base.Add(time.Duration(i) * time.Minute)
		if i >= 27 {
			at = base.Add(time.Hour) // three programs tie on updated_at
		}
		p := program{title: title, externalID: fmt.Sprintf("ext-%d", i), status: statuses[i%4], at: at}
		progs[id] = p
		add(id, at.Add(-time.Second), 1, events.ProgramCreated{ProgramID: id, Title: title, Category: "drama", Language: "en",
			ExternalID: p.externalID})
		v := int64(1)
		for _, s := range []string{"published", "unpublished", "archived"}[:i%4] {
			v++
			switch s {
			case "published":
				add(id, at, v, events.ProgramPublished{ProgramID: id})
			case "unpublished":
				add(id, at, v, events.ProgramUnpublished{ProgramID: id})
			case "archived":
				add(id, at, v, events.ProgramArchived{ProgramID: id})
			}
		}
		if i%4 == 0 { // drafts get an update at their instant
			add(id, at, 2, events.ProgramUpdated{ProgramID: id})
		}
	}
	ctx := context.Background()
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return editorial.New(codec).Apply(ctx, tx, evs) }); err != nil {
		t.Fatal(err)
	}
	rm, err := readmodel.NewCMSPrograms(pool, "")
	if err != nil {
		t.Fatal(err)
	}
	h, err := app.NewCMSProgramsHandler(rm)
	if err != nil {
		t.Fatal(err)
	}
	return h, progs
}

func TestCMSProgramsList(t *testing.T) {
	t.Parallel()
	h, progs := seed(t)
	ctx := context.Background()
	title := func(items []app.CMSProgramItem) []string {
		out := []string{}
		for _, it := range items {
			out = append(out, it.Title)
		}
		return out
	}
	tests := []struct {
		name   string
		q      app.CMSProgramList
		titles []string // expected titles in order; nil: only check counts
		n      int
		total  int
	}{
		{"first page, newest first, ties by id", app.CMSProgramList{Limit: 5}, []string{"Show 27", "Show 28", "Show 29", "Show 26", "Show 25"}, 5, 30},
		{"default limit", app.CMSProgramList{}, nil, 20, 30},
		{"last page", app.CMSProgramList{Page: 2}, nil, 10, 30},
		{"past the end", app.CMSProgramList{Page: 4, Limit: 10}, []string{}, 0, 30},
		{"status", app.CMSProgramList{Status: "published"}, nil, 8, 8},
		{"q is case-insensitive", app.CMSProgramList{Q: "nordic"}, []string{"the NORDIC coast", "Nordic Noir"}, 2, 2},
		{"q percent is literal", app.CMSProgramList{Q: "0%"}, []string{"100% Drama"}, 1, 1},
		{"q underscore is literal", app.CMSProgramList{Q: "e_c"}, []string{"snake_case"}, 1, 1},
		{"q matches an external id", app.CMSProgramList{Q: "ext-12"}, []string{"Show 12"}, 1, 1},
		{"q and status", app.CMSProgramList{Q: "nordic", Status: "archived"}, []string{"Nordic Noir"}, 1, 1},
		{"nothing matches", app.CMSProgramList{Q: "zzz", Page: 2}, []string{}, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			page, err := h.Handle(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Items) != tc.n || page.Total != tc.total {
				t.Fatalf("%d items of %d, want %d of %d: %v", len(page.Items), page.Total, tc.n, tc.total, title(page.Items))
			}
			if tc.titles != nil && !reflect.DeepEqual(title(page.Items), tc.titles) {
				t.Fatalf("titles = %v, want %v", title(page.Items), tc.titles)
			}
			for _, it := range page.Items {
				p := progs[it.ID]
				if it.Status != p.status || !it.UpdatedAt.Equal(p.at) || it.ExternalID != p.externalID || it.Tags == nil ||
					(tc.q.Status != "" && it.Status != tc.q.Status) || it.UpdatedAt.Location() != time.UTC {
					t.Errorf("item %+v does not match seeded %+v", it, p)
				}
				if (it.PublishedAt != nil) != (p.status != "draft") {
					t.Errorf("item %s published_at %v with status %s", it.ID, it.PublishedAt, p.status)
				}
			}
		})
	}
}

func TestCMSProgramsListValidation(t *testing.T) {
	t.Parallel()
	h, _ := seed(t)
	for _, q := range []app.CMSProgramList{{Status: "deleted"}, {Limit: 51}, {Page: -1}} {
		_, err := h.Handle(context.Background(), q)
		var ve *app.ValidationError
		if !errors.As(err, &ve) || len(ve.Fields) != 1 {
			t.Errorf("%+v: error %v, want one field error", q, err)
		}
	}
}
