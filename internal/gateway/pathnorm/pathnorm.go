// Package pathnorm turns the path of an HTTP request target into the one
// canonical form the gateway routes on and forwards, in the style of
// Envoy's normalize_path + merge_slashes, and refuses paths that different
// servers would read differently.
//
// # Why
//
// A route's policies protect the path the route matches. If the gateway
// matched the raw path but the backend resolved it (a file server cleaning
// `//admin`, `/x/../admin` or `/%2e/admin`), a request would be authorized
// as one path and served as another. Normalizing once, before routing, and
// forwarding the normalized path means what was authorized is what is
// served.
//
// # What Normalize does
//
//   - percent-escapes of unreserved characters (A-Z a-z 0-9 - . _ ~) are
//     decoded; every other escape is kept with upper-case hex (%2f → %2F);
//     bytes that may not appear raw in a path (space, `"`, `<`, `{`, non-
//     ASCII...) are percent-encoded;
//   - `.` and `..` segments are resolved (never above the root), and runs
//     of slashes are merged; a trailing slash is kept;
//   - it refuses, with an *Error: encoded slashes (%2F, %5C) and `;`
//     (path parameters) unless Options allow them; raw backslashes, NUL
//     and other control characters (raw or encoded), invalid escapes,
//     encoded bytes that are not valid UTF-8 (overlong `%c0%ae` included),
//     fragments (`#`) and paths that do not start with `/`, always.
//
// Escapes are decoded exactly once: `%252e` is the three characters `%2e`
// to every later reader, never a dot.
package pathnorm

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// Options relax Normalize for paths that need characters it refuses by
// default. Each one trusts the backend to treat the character as data.
type Options struct {
	// AllowEncodedSlashes keeps %2F and %5C (upper-cased) inside a segment.
	AllowEncodedSlashes bool
	// AllowSemicolons keeps `;` (path parameters, `/a;v=1/b`).
	AllowSemicolons bool
}

// Result is a normalized path.
type Result struct {
	// Path is the normalized, still escaped path: what the backend gets.
	Path string
	// Match is the path routes are chosen by. It equals Path unless an
	// allowed oddity is present; then it is Path read the way the most
	// lenient backend would read it: parameters dropped from every segment
	// (as Tomcat does) and %2F / %5C taken as separators, then normalized
	// again. A route that opted in is therefore chosen only when that
	// reading also lands on it, e.g. `/api/..%2F..%2Fadmin` is routed as
	// `/admin`.
	Match string
	// EncodedSlash and Semicolon say which allowed oddity the path had, so
	// the caller can check that the route it chose opted in.
	EncodedSlash, Semicolon bool
}

// Error is why a path was refused. Reason is short and safe to log and to
// answer with (it never echoes the path).
type Error struct{ Reason string }

func (e *Error) Error() string { return "invalid request path: " + e.Reason }

// The refusals. ErrEncodedSlash and ErrSemicolon are the ones Options can
// allow; IsOptional tells them apart.
var (
	ErrNotAbsolute  = &Error{"path does not start with /"}
	ErrEncodedSlash = &Error{"encoded slash or backslash (%2F, %5C)"}
	ErrSemicolon    = &Error{"semicolon (path parameter)"}
	ErrBackslash    = &Error{"backslash"}
	ErrNUL          = &Error{"NUL byte"}
	ErrControl      = &Error{"control character"}
	ErrBadEscape    = &Error{"invalid percent-escape"}
	ErrBadUTF8      = &Error{"encoded bytes are not valid UTF-8"}
	ErrFragment     = &Error{"fragment (#) in request target"}
)

// IsOptional reports whether err is a refusal that Options can lift.
func IsOptional(err error) bool {
	return errors.Is(err, ErrEncodedSlash) || errors.Is(err, ErrSemicolon)
}

const upperhex = "0123456789ABCDEF"

// Normalize normalizes p, the escaped path of a request target (without
// the query). See the package documentation for the rules.
func Normalize(p string, o Options) (Result, error) {
	if p == "" || p[0] != '/' {
		return Result{}, ErrNotAbsolute
	}
	if asIs(p) {
		return Result{Path: p, Match: p}, nil
	}
	return normalize(p, o)
}

// normalize is Normalize's full reading of p (which starts with '/').
func normalize(p string, o Options) (Result, error) {
	var res Result
	var segs []string
	var decoded []byte // the path with every escape decoded, for the UTF-8 check
	trailing := false
	var sb strings.Builder
	for _, raw := range strings.Split(p[1:], "/") {
		sb.Reset()
		decoded = append(decoded, '/')
		for i := 0; i < len(raw); i++ {
			c := raw[i]
			switch {
			case c == '%':
				if i+2 >= len(raw) || unhex(raw[i+1]) < 0 || unhex(raw[i+2]) < 0 {
					return Result{}, ErrBadEscape
				}
				v := byte(unhex(raw[i+1])<<4 | unhex(raw[i+2]))
				i += 2
				switch {
				case v == 0:
					return Result{}, ErrNUL
				case v < 0x20 || v == 0x7f:
					return Result{}, ErrControl
				case unreserved(v):
					decoded = append(decoded, v)
					sb.WriteByte(v)
					continue
				case v == '/' || v == '\\':
					if !o.AllowEncodedSlashes {
						return Result{}, ErrEncodedSlash
					}
				}
				decoded = append(decoded, v)
				sb.WriteByte('%')
				sb.WriteByte(upperhex[v>>4])
				sb.WriteByte(upperhex[v&15])
			case c == 0:
				return Result{}, ErrNUL
			case c < 0x20 || c == 0x7f:
				return Result{}, ErrControl
			case c == '\\':
				return Result{}, ErrBackslash
			case c == '#':
				return Result{}, ErrFragment
			case c == ';':
				if !o.AllowSemicolons {
					return Result{}, ErrSemicolon
				}
				decoded = append(decoded, c)
				sb.WriteByte(c)
			case bare[c]:
				decoded = append(decoded, c)
				sb.WriteByte(c)
			default: // space, quotes, brackets, '?' and non-ASCII: escape
				decoded = append(decoded, c)
				sb.WriteByte('%')
				sb.WriteByte(upperhex[c>>4])
				sb.WriteByte(upperhex[c&15])
			}
		}
		seg := sb.String()
		// With path parameters allowed, "..;x" is still a dot segment:
		// servers that strip parameters (Tomcat) resolve it.
		dot := seg
		if i := strings.IndexByte(seg, ';'); i >= 0 {
			dot = seg[:i]
		}
		switch {
		case dot == "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
			trailing = true
		case dot == "." || seg == "":
			trailing = true
		default:
			segs = append(segs, seg)
			trailing = false
		}
	}
	if !utf8.Valid(decoded) {
		return Result{}, ErrBadUTF8
	}
	res.Path = join(segs, trailing)
	res.Match = res.Path
	// Flags describe the output: a `;` in a resolved `..;x` segment is gone
	// and needs no opt-in from the route.
	res.Semicolon = strings.Contains(res.Path, ";")
	res.EncodedSlash = strings.Contains(res.Path, "%2F") || strings.Contains(res.Path, "%5C")
	if res.EncodedSlash || res.Semicolon {
		m, err := Normalize(lenientReading(res.Path), Options{})
		if err != nil {
			return Result{}, err
		}
		res.Match = m.Path
	}
	return res, nil
}

// lenientReading drops `;params` from each segment and turns %2F and %5C
// into separators: the path as the most forgiving backend reads it.
func lenientReading(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if j := strings.IndexByte(s, ';'); j >= 0 {
			segs[i] = s[:j]
		}
	}
	return strings.NewReplacer("%2F", "/", "%5C", "/").Replace(strings.Join(segs, "/"))
}

// bare are the bytes a path segment keeps as they are.
var bare = func() (t [256]bool) {
	for c := range 256 {
		t[c] = unreserved(byte(c)) || strings.IndexByte("!$&'()*+,=:@", byte(c)) >= 0
	}
	return t
}()

// asIs reports whether Normalize would return p unchanged with nothing
// to note: every byte is kept bare (no escape, semicolon, backslash or
// control byte), and no segment is empty (but a trailing one), "." or
// "..". Most paths are, and need no more than this one pass.
func asIs(p string) bool {
	start := 1 // of the current segment
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			if !bare[p[i]] {
				return false
			}
			continue
		}
		switch p[start:i] {
		case ".", "..":
			return false
		case "":
			if i < len(p) {
				return false
			}
		}
		start = i + 1
	}
	return true
}

func join(segs []string, trailing bool) string {
	if len(segs) == 0 {
		return "/"
	}
	out := "/" + strings.Join(segs, "/")
	if trailing {
		out += "/"
	}
	return out
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}
