// Package slogtext writes flat log records exactly as log/slog's
// TextHandler (with default options) writes them, at a fraction of its
// cost.
//
// The gateway writes an access-log line for every request. Through
// slog.Handler that is a Record, its attribute storage, a pooled handler
// state and a write under the handler's lock; on the fast front it was a
// tenth of what the gateway itself spends on a request. Append builds the
// same bytes from a slice of string and integer attributes; a record
// with anything else (groups, slog.Any values) is left to slog, so the
// output never differs. A test compares both writers on random records.
package slogtext

import (
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// Append appends the line slog.NewTextHandler(w, nil) would write for a
// record of t, level, msg and attrs, newline included, and reports
// whether it could: false (and b unchanged) when an attribute is not a
// string, integer or boolean, or has an empty key.
func Append(b []byte, t time.Time, level slog.Level, msg string, attrs []slog.Attr) ([]byte, bool) {
	for _, a := range attrs {
		switch a.Value.Kind() {
		case slog.KindString, slog.KindInt64, slog.KindUint64, slog.KindBool:
		default:
			return b, false
		}
		if a.Key == "" {
			return b, false
		}
	}
	if !t.IsZero() {
		b = append(b, "time="...)
		b = appendTime(b, t)
		b = append(b, ' ')
	}
	b = append(b, "level="...)
	b = appendString(b, level.String())
	b = append(b, " msg="...)
	b = appendString(b, msg)
	for _, a := range attrs {
		b = append(b, ' ')
		b = appendString(b, a.Key)
		b = append(b, '=')
		switch v := a.Value; v.Kind() {
		case slog.KindString:
			b = appendString(b, v.String())
		case slog.KindInt64:
			b = strconv.AppendInt(b, v.Int64(), 10)
		case slog.KindUint64:
			b = strconv.AppendUint(b, v.Uint64(), 10)
		case slog.KindBool:
			b = strconv.AppendBool(b, v.Bool())
		}
	}
	return append(b, '\n'), true
}

// appendString writes s bare when the text format allows it, else
// quoted as Go does.
func appendString(b []byte, s string) []byte {
	if needsQuoting(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

// needsQuoting is the text format's rule: a value is quoted when it is
// empty, or has a space, '=', '"', a control byte below space, invalid
// UTF-8, or a non-printing or space rune (DEL and '\\' are written bare,
// as JSON would).
func needsQuoting(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == '=' || c == '"' {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// timeLayout is slog's: RFC 3339 to the millisecond.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// stamp is one millisecond's time text in one location.
type stamp struct {
	ms   int64
	loc  *time.Location
	text []byte
}

// lastStamp is the time text last formatted: a busy gateway writes tens
// of lines in the same millisecond, and formatting the time was a third
// of what a line cost.
var lastStamp atomic.Pointer[stamp]

// appendTime appends t in timeLayout. Two times in the same millisecond
// and location have the same text (the layout truncates to the
// millisecond, and the zone's offset is the instant's).
func appendTime(b []byte, t time.Time) []byte {
	ms, loc := t.UnixMilli(), t.Location()
	if s := lastStamp.Load(); s != nil && s.ms == ms && s.loc == loc {
		return append(b, s.text...)
	}
	start := len(b)
	b = t.AppendFormat(b, timeLayout)
	lastStamp.Store(&stamp{ms: ms, loc: loc, text: append([]byte(nil), b[start:]...)})
	return b
}
