package accounts

import (
	"fmt"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of the account fields (API.md, issue 5). Password lengths count bytes,
// because bcrypt reads bytes (and at most 72 of them); name lengths count
// characters.
const (
	MinPasswordBytes = 10
	MaxPasswordBytes = 72
	MaxNameLen       = 200
	// MaxEmailLen is RFC 5321's limit on a forward path (254 octets).
	MaxEmailLen = 254
)

type fieldErrors []FieldError

func (fe *fieldErrors) add(field, format string, args ...any) {
	*fe = append(*fe, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (fe fieldErrors) err() error {
	if len(fe) == 0 {
		return nil
	}
	return &ValidationError{Fields: fe}
}

// NormalizeEmail trims and lower-cases an email: the form stored and looked up.
// Lower-casing the local part too is a deliberate simplification: no mail provider
// people use tells "Ann" from "ann", and two accounts that differ only in case would
// be a support problem and a phishing aid.
func NormalizeEmail(email string) string {
	return strings.ToLower(strings.TrimSpace(email))
}

// checkEmail validates a normalized email: a bare addr-spec (no display name, no
// angle brackets, no comments) of at most 254 bytes with a local part and a domain.
func checkEmail(fe *fieldErrors, email string) {
	switch {
	case email == "":
		fe.add("email", "is required")
		return
	case len(email) > MaxEmailLen:
		fe.add("email", "must be at most %d bytes", MaxEmailLen)
		return
	case !utf8.ValidString(email):
		fe.add("email", "must be valid UTF-8")
		return
	}
	addr, err := mail.ParseAddress(email)
	local, domain, ok := strings.Cut(email, "@")
	if err != nil || addr.Name != "" || addr.Address != email || !ok || local == "" || domain == "" ||
		strings.ContainsAny(email, " \t<>()[]\\,;:\"") {
		fe.add("email", "must be an email address such as ann@example.com")
	}
}

// normName trims a name and checks it: 1–200 characters, no control characters.
func normName(fe *fieldErrors, name string) string {
	name = strings.TrimSpace(name)
	switch n := utf8.RuneCountInString(name); {
	case n == 0:
		fe.add("name", "is required")
	case n > MaxNameLen:
		fe.add("name", "must be at most %d characters", MaxNameLen)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		fe.add("name", "must not contain control characters")
	}
	return name
}

// checkPassword checks a new password's length in bytes. It is not trimmed: every
// byte of a password counts.
func checkPassword(fe *fieldErrors, password string) {
	switch n := len(password); {
	case n == 0:
		fe.add("password", "is required")
	case n < MinPasswordBytes:
		fe.add("password", "must be at least %d bytes", MinPasswordBytes)
	case n > MaxPasswordBytes:
		fe.add("password", "must be at most %d bytes", MaxPasswordBytes)
	}
}

func checkRole(fe *fieldErrors, role string) {
	if !ValidRole(role) {
		fe.add("role", "must be %s, %s or %s", RoleViewer, RoleEditor, RoleAdmin)
	}
}
