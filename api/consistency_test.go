package api_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/mediamesh/mediamesh/api"
)

func TestConsistencyTokens(t *testing.T) {
	t.Parallel()
	tokens, err := api.NewConsistencyTokens(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	wp := api.WritePoint{StreamID: "program-0190f1f4-0000-7000-8000-000000000001", Version: 12, Position: 1 << 40}
	tok := tokens.Sign(wp)
	got, err := tokens.Verify(tok)
	if err != nil || got != wp {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	// Another instance with the same secret verifies it; another secret does not.
	same, _ := api.NewConsistencyTokens(testSecret)
	if _, err := same.Verify(tok); err != nil {
		t.Fatalf("same secret: %v", err)
	}
	other, _ := api.NewConsistencyTokens([]byte("a different secret of some length"))

	payload, mac, _ := strings.Cut(tok, ".")
	forgedPayload := base64.RawURLEncoding.EncodeToString([]byte(`{"s":"program-x","v":99,"p":1}`))
	unsigned := base64.RawURLEncoding.EncodeToString([]byte(`{"s":"","v":0,"p":-1}`))
	for name, bad := range map[string]string{
		"empty":               "",
		"no dot":              payload,
		"forged payload":      forgedPayload + "." + mac,
		"flipped mac":         payload + "." + flip(mac),
		"truncated mac":       payload + "." + mac[:10],
		"padded mac":          payload + "." + mac + "=",
		"extra part":          tok + ".x",
		"not base64":          "%%%.###",
		"huge":                strings.Repeat("a", 5000) + "." + mac,
		"invalid but signed?": unsigned + "." + mac,
	} {
		if _, err := tokens.Verify(bad); !errors.Is(err, api.ErrInvalidConsistencyToken) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := other.Verify(tok); !errors.Is(err, api.ErrInvalidConsistencyToken) {
		t.Errorf("other secret: err = %v", err)
	}
	if _, err := api.NewConsistencyTokens([]byte("short")); err == nil {
		t.Error("a short secret was accepted")
	}
}

func flip(s string) string {
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}
