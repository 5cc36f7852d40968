package app

import (
	"strconv"
	"strings"
)

// Page is one page of a list, as every list of the API returns it.
type Page[T any] struct {
	Items []T `json:"items"`
	Page  int `json:"page"`
	Limit int `json:"limit"`
	Total int `json:"total"`
}

// Paging limits shared by every list of the API.
const (
	DefaultLimit = 20
	MaxLimit     = 50
)

// ParsePaging parses the page and limit query parameters of a list. An empty string
// yields 0 ("not given": the handler applies the default); anything else must be an
// integer in range (page >= 1, limit 1..MaxLimit), or the result is a
// *ValidationError naming each bad field. The api uses it so that an explicit
// "limit=0" is a 400 rather than the default.
func ParsePaging(page, limit string) (int, int, error) {
	var fields []FieldError
	p, ok := parseBound(page, 1, 0)
	if !ok {
		fields = append(fields, FieldError{Field: "page", Message: "must be an integer >= 1"})
	}
	l, ok := parseBound(limit, 1, MaxLimit)
	if !ok {
		fields = append(fields, FieldError{Field: "limit", Message: "must be an integer from 1 to 50"})
	}
	if len(fields) > 0 {
		return 0, 0, &ValidationError{Fields: fields}
	}
	return p, l, nil
}

// parseBound parses s as an integer in [lo, hi] (hi 0: unbounded); "" is 0.
func parseBound(s string, lo, hi int) (int, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || (hi > 0 && n > hi) {
		return 0, false
	}
	return n, true
}

// paging validates page and limit of a list query (0 means not given) and returns
// them with the defaults applied, appending any problem to fields.
func paging(page, limit int, fields *[]FieldError) (int, int) {
	switch {
	case page == 0:
		page = 1
	case page < 0:
		*fields = append(*fields, FieldError{Field: "page", Message: "must be an integer >= 1"})
	}
	switch {
	case limit == 0:
		limit = DefaultLimit
	case limit < 0 || limit > MaxLimit:
		*fields = append(*fields, FieldError{Field: "limit", Message: "must be an integer from 1 to 50"})
	}
	return page, limit
}
