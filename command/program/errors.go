package program

import (
	"errors"
	"strings"
)

// Rule errors. Behaviour methods wrap them with a human detail
// (fmt.Errorf("publish program %s: it is archived: %w", ...)), so callers check them
// with errors.Is and may show err.Error() to the user.
var (
	// ErrInvalidState: the current state forbids the command, e.g. publishing an
	// archived program (HTTP 422).
	ErrInvalidState = errors.New("invalid state")
	// ErrDuplicateEpisodeNumber: another episode of the program already has this
	// number in this season; archived episodes keep holding their number (HTTP 409).
	ErrDuplicateEpisodeNumber = errors.New("duplicate episode number")
	// ErrEpisodeNotFound: the program has no episode with this id (HTTP 404).
	ErrEpisodeNotFound = errors.New("episode not found")
)

// FieldError is one invalid field: Field is the JSON (snake_case) name of the field,
// Message says what is wrong with it.
type FieldError struct {
	Field   string
	Message string
}

// ValidationError lists every invalid field of a command at once, so a client can fix
// them all in one round trip (HTTP 400 with problem+json "errors"). Check for it with
// errors.As(err, &ve) where ve is a *ValidationError.
type ValidationError struct {
	Fields []FieldError
}

// Error joins the field errors: "invalid input: title: must not be empty; language: ...".
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("invalid input")
	for i, f := range e.Fields {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(f.Field)
		b.WriteString(": ")
		b.WriteString(f.Message)
	}
	return b.String()
}
