package app

import "strings"

// FieldError names one invalid input field of a query.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError is returned by query handlers for invalid input; the api maps it
// to a 400 problem+json whose errors are Fields. Check it with errors.As.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid query: " + strings.Join(parts, "; ")
}
