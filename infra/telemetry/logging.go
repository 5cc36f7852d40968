package telemetry

import (
	"context"
	"io"
	"log/slog"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// Redacted replaces every value the logger must not write.
const Redacted = "[REDACTED]"

// NewLogger returns the JSON logger every MediaMesh process logs through:
//
//   - Redact (a ReplaceAttr) removes secrets by key and by shape, whatever logs
//     them: an attribute named authorization, cookie, password, secret, token,
//     api_key, … (or ending in _password, _secret, _token, _api_key), a value that
//     is a bearer credential, and the password of a URL (postgres://u:p@h).
//   - Records logged with a context that carries a span get trace_id and span_id,
//     so a log line leads to its trace. (The api's access log adds request_id.)
func NewLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: Redact})
	return slog.New(traceHandler{base: h})
}

// sensitiveKeys are attribute names whose values are never logged (compared in
// lower case, with "-" as "_").
var sensitiveKeys = map[string]bool{
	"authorization": true, "proxy_authorization": true, "cookie": true, "set_cookie": true,
	"password": true, "passwd": true, "pwd": true, "secret": true, "token": true,
	"api_key": true, "apikey": true, "private_key": true, "secret_key": true, "signing_key": true,
	"access_token": true, "refresh_token": true, "id_token": true, "client_secret": true, "credentials": true,
}

var sensitiveSuffixes = []string{"_password", "_secret", "_token", "_api_key", "_secret_key", "_private_key"}

// SensitiveKey reports whether an attribute called key must not be logged.
func SensitiveKey(key string) bool {
	k := strings.ReplaceAll(strings.ToLower(key), "-", "_")
	if sensitiveKeys[k] {
		return true
	}
	for _, s := range sensitiveSuffixes {
		if strings.HasSuffix(k, s) {
			return true
		}
	}
	return false
}

// Redact is a slog ReplaceAttr that removes secrets (see NewLogger). It only
// reads the attribute's own key and value, so it is safe in any handler.
func Redact(_ []string, a slog.Attr) slog.Attr {
	if SensitiveKey(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	if a.Value.Kind() == slog.KindString {
		if s, changed := redactString(a.Value.String()); changed {
			return slog.String(a.Key, s)
		}
	}
	return a
}

// redactString removes bearer credentials and URL passwords from a value.
func redactString(s string) (string, bool) {
	lower := strings.ToLower(s)
	if i := strings.Index(lower, "bearer "); i >= 0 {
		return s[:i] + "Bearer " + Redacted, true
	}
	if strings.HasPrefix(lower, "basic ") {
		return "Basic " + Redacted, true
	}
	if strings.Contains(s, "://") && strings.Contains(s, "@") {
		changed := false
		fields := strings.Fields(s)
		for i, f := range fields {
			u, err := url.Parse(f)
			if err != nil || u.User == nil {
				continue
			}
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "REDACTED")
				fields[i] = u.String()
				changed = true
			}
		}
		if changed {
			return strings.Join(fields, " "), true
		}
	}
	return s, false
}

// traceHandler adds the span of a record's context as top-level trace_id and
// span_id, whatever groups the logger was given: it keeps the groups (and the
// attributes added inside them) itself and nests the record's attributes when it
// hands the record to base.
type traceHandler struct {
	base       slog.Handler
	groups     []string
	groupAttrs [][]slog.Attr // attributes added after each group was opened
}

func (h traceHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.base.Enabled(ctx, l) }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() && len(h.groups) == 0 {
		return h.base.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	if sc.IsValid() {
		out.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	var inner []slog.Attr
	r.Attrs(func(a slog.Attr) bool {
		inner = append(inner, a)
		return true
	})
	for i := len(h.groups) - 1; i >= 0; i-- {
		inner = append(append([]slog.Attr(nil), h.groupAttrs[i]...), inner...)
		inner = []slog.Attr{{Key: h.groups[i], Value: slog.GroupValue(inner...)}}
	}
	out.AddAttrs(inner...)
	return h.base.Handle(ctx, out)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(h.groups) == 0 {
		return traceHandler{base: h.base.WithAttrs(attrs)}
	}
	ga := make([][]slog.Attr, len(h.groupAttrs))
	copy(ga, h.groupAttrs)
	last := len(ga) - 1
	ga[last] = append(append([]slog.Attr(nil), ga[last]...), attrs...)
	return traceHandler{base: h.base, groups: h.groups, groupAttrs: ga}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return traceHandler{
		base:       h.base,
		groups:     append(append([]string(nil), h.groups...), name),
		groupAttrs: append(append([][]slog.Attr(nil), h.groupAttrs...), nil),
	}
}
