package api_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/api"
)

// listen serves e's app on a loopback port until the test ends.
func listen(t *testing.T, e *env) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.app.Listener(ln) }()
	t.Cleanup(func() {
		if err := e.app.ShutdownWithTimeout(5 * time.Second); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// TestRealListener runs requests over TCP: a command, and the rejections fasthttp
// makes before any handler runs (body and headers too large), which must still be
// problem+json.
func TestRealListener(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base := listen(t, e)
	editor := e.token(t, "alice", api.RoleEditor)
	client := &http.Client{Timeout: 10 * time.Second}
	send := func(method, path string, body []byte, hdr map[string]string) response {
		t.Helper()
		r, err := http.NewRequest(method, base+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		res, err := client.Do(r)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return response{status: res.StatusCode, header: res.Header, body: b}
	}
	auth := map[string]string{"Authorization": "Bearer " + editor, "Content-Type": "application/json"}

	res := send(http.MethodPost, "/v1/programs", []byte(`{"title":"T","category":"news","language":"en"}`), auth)
	if res.status != http.StatusCreated || res.header.Get("Location") == "" {
		t.Fatalf("create over TCP: %d %s", res.status, res.body)
	}

	// An oversized body is refused from its Content-Length, before it is read. (Over
	// a raw connection: a client still writing the body may see the reset that
	// follows the 413 instead of the 413.)
	res = raw(t, base, "POST /v1/programs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+editor+
		"\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n")
	res.problem(t, http.StatusRequestEntityTooLarge)

	// Headers beyond the read buffer (8 KiB): exactly a buffer's worth is sent, so the
	// server has read everything when it answers and closes.
	head := "GET /health/live HTTP/1.1\r\nHost: x\r\nX-Padding: "
	res = raw(t, base, head+strings.Repeat("a", api.DefaultRequestHeaderSize-len(head)))
	res.problem(t, http.StatusRequestHeaderFieldsTooLarge)

	if n := e.fakes.rec.count(); n != 1 {
		t.Fatalf("executed %d commands, want 1 (the valid create)", n)
	}

	// Malformed HTTP is a 400 problem too, not a dropped connection or a 5xx.
	raw(t, base, "POST /v1/programs HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n").problem(t, http.StatusBadRequest)
}

// raw writes request bytes on a new connection and reads one response.
func raw(t *testing.T, base, request string) response {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprint(conn, request); err != nil {
		t.Fatal(err)
	}
	hr, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer hr.Body.Close()
	b, err := io.ReadAll(hr.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: hr.StatusCode, header: hr.Header, body: b}
}
