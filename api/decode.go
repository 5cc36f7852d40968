package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/mediamesh/mediamesh/command/program"
)

// Limits of the JSON decoder, checked before any value reaches a command. They are
// transport bounds, not business rules: the command side validates every field
// exactly; these keep absurd input (a 900 KB title, a million tags) from getting
// that far.
const (
	maxJSONDepth = 32
	// maxStringRunes is the longest string any field accepts (a description).
	maxStringRunes = program.MaxDescriptionLen
	maxArrayLen    = 10 * program.MaxTags
	// maxEchoedName bounds how much of an unknown field's name an error repeats.
	maxEchoedName = 64
	// maxFieldErrors bounds a 400's list, so a body of a million unknown keys does
	// not get a larger answer.
	maxFieldErrors = 50
)

func errUnsupportedMediaType(detail string) *httpError {
	return &httpError{status: http.StatusUnsupportedMediaType, kind: "unsupported-media-type", detail: detail}
}

// commandBody returns the body of a command request after checking its size,
// encoding and content type. An empty body is allowed only when !required.
func (s *server) commandBody(c *fiber.Ctx, required bool) ([]byte, error) {
	// Content-Encoding is refused rather than decoded: a compressed body would slip
	// past the size limit (fiber's Body() inflates without bound).
	if ce := strings.TrimSpace(c.Get(fiber.HeaderContentEncoding)); ce != "" && !strings.EqualFold(ce, "identity") {
		return nil, errUnsupportedMediaType("Content-Encoding is not supported on requests")
	}
	body := c.Request().Body()
	if len(body) > s.cfg.CommandBodyLimit {
		return nil, &httpError{status: http.StatusRequestEntityTooLarge, kind: "body-too-large",
			detail: fmt.Sprintf("the request body exceeds %d bytes", s.cfg.CommandBodyLimit)}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if required {
			return nil, errBadRequest("a JSON body is required")
		}
		return nil, nil
	}
	ct := c.Get(fiber.HeaderContentType)
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != fiber.MIMEApplicationJSON {
		return nil, errUnsupportedMediaType("Content-Type must be application/json")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return nil, errUnsupportedMediaType("the body must be UTF-8")
	}
	return body, nil
}

// decodeStrict decodes a JSON object into dst, a pointer to a flat struct whose
// fields carry json tags. It accepts nothing it does not understand:
//   - invalid UTF-8, nesting deeper than maxJSONDepth, a non-object, malformed JSON
//     and data after the object are 400s with a detail;
//   - unknown, repeated and null fields, values of the wrong type and strings or
//     arrays beyond the transport limits are 400s listing every such field.
//
// Null is never accepted: optional fields are omitted, never nulled, so a PATCH's
// "not given" and "set to empty" cannot be confused.
func decodeStrict(body []byte, dst any) error {
	if !utf8.Valid(body) {
		return errBadRequest("the body is not valid UTF-8")
	}
	if err := checkDepth(body); err != nil {
		return err
	}
	fields := jsonFields(dst)
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		if err != nil {
			return syntaxProblem(err)
		}
		return errBadRequest("the body must be a JSON object")
	}
	var (
		problems []FieldError
		seen     = map[string]bool{}
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return syntaxProblem(err)
		}
		name, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return syntaxProblem(err)
		}
		field, known := fields[name]
		switch {
		case seen[name]:
			problems = append(problems, FieldError{Field: echo(name), Message: "appears more than once"})
		case !known:
			problems = append(problems, FieldError{Field: echo(name), Message: "is not a known field"})
		case bytes.Equal(raw, []byte("null")):
			problems = append(problems, FieldError{Field: name, Message: "must not be null; omit the field instead"})
		default:
			if err := json.Unmarshal(raw, field.Addr().Interface()); err != nil {
				problems = append(problems, FieldError{Field: name, Message: typeMessage(field.Type())})
			} else if msg := limitProblem(field); msg != "" {
				problems = append(problems, FieldError{Field: name, Message: msg})
			}
		}
		seen[name] = true
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return syntaxProblem(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errBadRequest("the body has data after the JSON object")
	}
	if len(problems) > maxFieldErrors {
		problems = problems[:maxFieldErrors]
	}
	if len(problems) > 0 {
		return errBadRequest("the request has invalid fields", problems...)
	}
	return nil
}

func syntaxProblem(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return errBadRequest(fmt.Sprintf("the body is not valid JSON (at byte %d)", se.Offset))
	}
	return errBadRequest("the body is not valid JSON")
}

func echo(name string) string {
	if len(name) <= maxEchoedName {
		return name
	}
	cut := maxEchoedName
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	return name[:cut] + "…"
}

// checkDepth rejects JSON nested deeper than maxJSONDepth without decoding it.
func checkDepth(body []byte) error {
	depth, inString, escaped := 0, false, false
	for _, b := range body {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
		case b == '"':
			inString = true
		case b == '{' || b == '[':
			depth++
			if depth > maxJSONDepth {
				return errBadRequest(fmt.Sprintf("the body is nested deeper than %d levels", maxJSONDepth))
			}
		case b == '}' || b == ']':
			depth--
		}
	}
	return nil
}

// jsonFields maps the json names of dst's fields to the fields themselves.
func jsonFields(dst any) map[string]reflect.Value {
	v := reflect.ValueOf(dst).Elem()
	t := v.Type()
	out := make(map[string]reflect.Value, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out[name] = v.Field(i)
		}
	}
	return out
}

// typeMessage says what type a field wants, in JSON terms.
func typeMessage(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "must be a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "must be an integer within range"
	case reflect.Bool:
		return "must be true or false"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "must be an array of strings"
		}
		return "must be an array"
	}
	return "has the wrong type"
}

// limitProblem checks a decoded field against the transport limits.
func limitProblem(v reflect.Value) string {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return ""
		}
		v = v.Elem()
	}
	tooLong := fmt.Sprintf("must be at most %d characters", maxStringRunes)
	switch v.Kind() {
	case reflect.String:
		if utf8.RuneCountInString(v.String()) > maxStringRunes {
			return tooLong
		}
	case reflect.Slice:
		if v.Len() > maxArrayLen {
			return fmt.Sprintf("must have at most %d entries", maxArrayLen)
		}
		if v.Type().Elem().Kind() == reflect.String {
			for i := range v.Len() {
				if utf8.RuneCountInString(v.Index(i).String()) > maxStringRunes {
					return tooLong
				}
			}
		}
	}
	return ""
}
