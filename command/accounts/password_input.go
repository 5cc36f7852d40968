package accounts

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// ReadPassword reads a password for `mediamesh users create --password-stdin`: all
// of r, minus one trailing newline ("\n" or "\r\n", so both `printf %s` and `echo`
// work). Input of more than one line, or longer than a password can be, is refused
// rather than cut, so an operator never ends up with a password other than the one
// they typed. The length bounds themselves are checked by CreateUser.
func ReadPassword(r io.Reader) (string, error) {
	// Read a little more than the longest password and its newline, to notice excess.
	b, err := io.ReadAll(io.LimitReader(r, MaxPasswordBytes+3))
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	switch {
	case len(b) > MaxPasswordBytes:
		return "", fmt.Errorf("read password: longer than %d bytes", MaxPasswordBytes)
	case bytes.ContainsAny(b, "\r\n"):
		return "", errors.New("read password: the input has more than one line")
	case len(b) == 0:
		return "", errors.New("read password: standard input is empty")
	}
	return string(b), nil
}
