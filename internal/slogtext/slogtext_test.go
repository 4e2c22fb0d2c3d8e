package slogtext

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"
)

// viaSlog is what slog.TextHandler writes for the same record.
func viaSlog(t time.Time, level slog.Level, msg string, attrs []slog.Attr) string {
	var buf bytes.Buffer
	r := slog.NewRecord(t, level, msg, 0)
	r.AddAttrs(attrs...)
	slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}).Handle(context.Background(), r)
	return buf.String()
}

func check(t *testing.T, tm time.Time, level slog.Level, msg string, attrs []slog.Attr) {
	t.Helper()
	got, ok := Append(nil, tm, level, msg, attrs)
	if !ok {
		t.Fatalf("Append refused %v", attrs)
	}
	if want := viaSlog(tm, level, msg, attrs); string(got) != want {
		t.Fatalf("Append wrote\n%q\nslog writes\n%q", got, want)
	}
}

func TestAppendWritesWhatSlogWrites(t *testing.T) {
	at := time.Date(2026, 12, 2, 2, 5, 34, 123987654, time.UTC)
	cases := [][]slog.Attr{
		nil,
		{slog.String("bind", "bind/8080"), slog.String("route", "default/app"), slog.Int("status", 200), slog.String("duration_ms", "0.412")},
		{slog.String("path", "/a b"), slog.String("empty", ""), slog.String("eq", "a=b"), slog.String("quote", `say "hi"`)},
		{slog.String("backslash", `C:\dir`), slog.String("del", "a\x7fb"), slog.String("tab", "a\tb"), slog.String("nl", "line\nbreak")},
		{slog.String("utf8", "héllo"), slog.String("nbsp", "a\u00a0b"), slog.String("invalid", "a\xffb"), slog.String("zwsp", "a\u200bb")},
		{slog.String("k y", "key with space"), slog.String("k=y", "v")},
		{slog.Int64("neg", -42), slog.Uint64("big", 1<<63), slog.Bool("yes", true), slog.Bool("no", false)},
	}
	for _, attrs := range cases {
		check(t, at, slog.LevelInfo, "request", attrs)
	}
	check(t, time.Time{}, slog.LevelWarn, "no time", nil)
	check(t, at.In(time.FixedZone("x", -5*3600-30*60)), slog.LevelError+2, "msg with space", nil)
	check(t, at, slog.LevelDebug-1, "", nil)
}

func TestAppendLeavesOtherKindsToSlog(t *testing.T) {
	for _, a := range []slog.Attr{
		slog.Any("map", map[string]int{"a": 1}),
		slog.Group("g", slog.String("a", "b")),
		slog.Float64("f", 1.5),
		slog.Duration("d", time.Second),
		slog.String("", "empty key"),
	} {
		before := []byte("kept")
		got, ok := Append(before, time.Now(), slog.LevelInfo, "m", []slog.Attr{slog.String("a", "b"), a})
		if ok || string(got) != "kept" {
			t.Errorf("%v: Append = %q, %v; want it refused and the buffer untouched", a, got, ok)
		}
	}
}

func TestAppendRandomStrings(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", "0", " ", "=", `"`, `\`, "\t", "\n", "\x00", "\x7f", "\x80", "\xff", "é", "\u00a0", "\u2028", "\u200b", "😀", "{", "}", "/", "%"}
	for range 20000 {
		var s []byte
		for range rng.IntN(6) {
			s = append(s, alphabet[rng.IntN(len(alphabet))]...)
		}
		check(t, time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)), slog.LevelInfo, string(s), []slog.Attr{slog.String(string(s)+"k", string(s))})
	}
}

func FuzzAppend(f *testing.F) {
	f.Add("request", "path", "/x y", int64(3))
	f.Fuzz(func(t *testing.T, msg, key, value string, n int64) {
		if key == "" {
			return
		}
		check(t, time.Unix(n, n), slog.LevelInfo, msg, []slog.Attr{slog.String(key, value), slog.Int64("n", n)})
	})
}

// TestAppendTimeReusesOnlyTheSameMillisecondAndZone formats instants
// around millisecond, second and zone boundaries, in turns, so that each
// may find another's text cached: each must read as AppendFormat writes it.
func TestAppendTimeReusesOnlyTheSameMillisecondAndZone(t *testing.T) {
	base := time.Date(2026, 12, 31, 23, 59, 59, 998_000_000, time.UTC)
	zones := []*time.Location{time.UTC, time.Local, time.FixedZone("a", 3600), time.FixedZone("b", -5*3600-30*60)}
	if ny, err := time.LoadLocation("America/New_York"); err == nil {
		zones = append(zones, ny)
		// The hour the clocks go back: one offset, then the other,
		// at instants an hour apart that read alike but for it.
		dst := time.Date(2026, 11, 1, 5, 59, 59, 999_500_000, time.UTC)
		for _, d := range []time.Duration{0, time.Microsecond, time.Millisecond, time.Hour, time.Hour + time.Millisecond} {
			at := dst.Add(d).In(ny)
			if got, want := string(appendTime(nil, at)), at.Format(timeLayout); got != want {
				t.Errorf("%v: %s; want %s", at, got, want)
			}
		}
	}
	for _, z := range zones {
		for _, d := range []time.Duration{0, 1, time.Microsecond, 999 * time.Microsecond, time.Millisecond, 1500 * time.Microsecond, 2 * time.Millisecond, 3 * time.Millisecond, time.Second, -time.Millisecond, -1} {
			at := base.Add(d).In(z)
			for _, at := range []time.Time{at, at.UTC(), at} { // one instant in two zones, then the next in the same millisecond
				if got, want := string(appendTime([]byte("x"), at)), "x"+at.Format(timeLayout); got != want {
					t.Errorf("%v: %s; want %s", at, got, want)
				}
			}
		}
	}
	// Before 1970 too: a millisecond is the one that begins at or
	// before the instant.
	for _, at := range []time.Time{time.Unix(-1, 999_999_999), time.Unix(-1, 0), time.Unix(0, 0), time.Unix(-2, 500_000_000)} {
		if got, want := string(appendTime(nil, at.UTC())), at.UTC().Format(timeLayout); got != want {
			t.Errorf("%v: %s; want %s", at, got, want)
		}
	}
}
