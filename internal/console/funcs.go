package console

import (
	"fmt"
	"html/template"
	"time"
)

var funcs = template.FuncMap{
	"stateLabel": stateLabel,
	"when":       when,
	"ago":        ago,
	"bytes":      humanBytes,
	"ms":         func(v float64) string { return fmt.Sprintf("%.0f ms", v) },
	"duration":   func(d time.Duration) string { return d.Round(time.Millisecond).String() },
	"iso":        func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"list":       func(s ...string) []string { return s },
	"deref":      func(t *time.Time) time.Time { return *t },
}

// stateLabel words a private network's state as the console shows it.
func stateLabel(state string) string {
	switch state {
	case "disconnected", "":
		return "not connected"
	}
	return state
}

// when is a moment, in UTC, to the second.
func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// ago says how long ago t was, roughly.
func ago(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute") + " ago"
	case d < 48*time.Hour:
		return plural(int(d/time.Hour), "hour") + " ago"
	}
	return plural(int(d/(24*time.Hour)), "day") + " ago"
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

func humanBytes(n int64) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
