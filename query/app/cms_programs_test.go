package app_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mediamesh/mediamesh/query/app"
)

type fakeCMSPrograms struct {
	got   app.CMSProgramFilter
	calls int
	items []app.CMSProgramItem
	total int
	err   error
}

func (f *fakeCMSPrograms) ListCMSPrograms(_ context.Context, q app.CMSProgramFilter) ([]app.CMSProgramItem, int, error) {
	f.calls++
	f.got = q
	return f.items, f.total, f.err
}

func fields(err error) []string {
	var ve *app.ValidationError
	if !errors.As(err, &ve) {
		return nil
	}
	var out []string
	for _, f := range ve.Fields {
		out = append(out, f.Field)
	}
	return out
}

func TestCMSProgramsHandlerValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		q      app.CMSProgramList
		fields []string // invalid fields, nil when valid
		want   app.CMSProgramFilter
	}{
		{"defaults", app.CMSProgramList{}, nil, app.CMSProgramFilter{Offset: 0, Limit: 20}},
		{"page 3 of 10", app.CMSProgramList{Page: 3, Limit: 10}, nil, app.CMSProgramFilter{Offset: 20, Limit: 10}},
		{"every status", app.CMSProgramList{Status: "archived", Q: "  noir "}, nil, app.CMSProgramFilter{Status: "archived", Q: "noir", Limit: 20}},
		{"limit 50", app.CMSProgramList{Limit: 50}, nil, app.CMSProgramFilter{Limit: 50}},
		{"huge page is an empty page", app.CMSProgramList{Page: 1 << 62, Limit: 50}, nil, app.CMSProgramFilter{Offset: 1<<63 - 1, Limit: 50}},
		{"unknown status", app.CMSProgramList{Status: "live"}, []string{"status"}, app.CMSProgramFilter{}},
		{"limit above 50", app.CMSProgramList{Limit: 51}, []string{"limit"}, app.CMSProgramFilter{}},
		{"negative page and limit", app.CMSProgramList{Page: -1, Limit: -1}, []string{"page", "limit"}, app.CMSProgramFilter{}},
		{"q too long", app.CMSProgramList{Q: strings.Repeat("é", 201)}, []string{"q"}, app.CMSProgramFilter{}},
		{"q not UTF-8", app.CMSProgramList{Q: "\xff"}, []string{"q"}, app.CMSProgramFilter{}},
		{"q with NUL", app.CMSProgramList{Q: "a\x00"}, []string{"q"}, app.CMSProgramFilter{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rm := &fakeCMSPrograms{total: 7}
			h, err := app.NewCMSProgramsHandler(rm)
			if err != nil {
				t.Fatal(err)
			}
			page, err := h.Handle(context.Background(), tc.q)
			if tc.fields != nil {
				if got := fields(err); !reflect.DeepEqual(got, tc.fields) {
					t.Fatalf("error %v names fields %v, want %v", err, got, tc.fields)
				}
				if rm.calls != 0 {
					t.Fatal("invalid query reached the read model")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rm.got != tc.want {
				t.Errorf("read model got %+v, want %+v", rm.got, tc.want)
			}
			if page.Items == nil || page.Total != 7 || page.Limit != tc.want.Limit || page.Page < 1 {
				t.Errorf("page = %+v", page)
			}
		})
	}
}

func TestCMSProgramsHandlerErrors(t *testing.T) {
	t.Parallel()
	if _, err := app.NewCMSProgramsHandler(nil); err == nil {
		t.Fatal("nil read model accepted")
	}
	boom := errors.New("boom")
	h, _ := app.NewCMSProgramsHandler(&fakeCMSPrograms{err: boom})
	_, err := h.Handle(context.Background(), app.CMSProgramList{})
	var ve *app.ValidationError
	if !errors.Is(err, boom) || errors.As(err, &ve) {
		t.Fatalf("read model failure = %v, want it wrapped and not a validation error", err)
	}
}

func TestParsePaging(t *testing.T) {
	t.Parallel()
	tests := []struct {
		page, limit string
		wantP       int
		wantL       int
		fields      []string
	}{
		{"", "", 0, 0, nil},
		{"2", "50", 2, 50, nil},
		{" 3 ", "1", 3, 1, nil},
		{"0", "", 0, 0, []string{"page"}},
		{"", "0", 0, 0, []string{"limit"}},
		{"x", "51", 0, 0, []string{"page", "limit"}},
		{"1.5", "-2", 0, 0, []string{"page", "limit"}},
		{"99999999999999999999", "", 0, 0, []string{"page"}},
	}
	for _, tc := range tests {
		p, l, err := app.ParsePaging(tc.page, tc.limit)
		if got := fields(err); !reflect.DeepEqual(got, tc.fields) || p != tc.wantP || l != tc.wantL {
			t.Errorf("ParsePaging(%q, %q) = %d, %d, %v; want %d, %d, fields %v", tc.page, tc.limit, p, l, err, tc.wantP, tc.wantL, tc.fields)
		}
	}
	var ve *app.ValidationError
	_, _, err := app.ParsePaging("0", "0")
	if !errors.As(err, &ve) || !strings.Contains(ve.Error(), "page") || !strings.Contains(ve.Error(), "limit") {
		t.Fatalf("error text %v should name both fields", err)
	}
}
