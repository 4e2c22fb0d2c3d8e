package handoff

import (
	"bytes"
	"encoding/binary"

	"golang.org/x/net/http/httpguts"
)

// scan looks at the request head at the start of b. It returns the head's
// length when b holds a complete head the fast server may serve (see the
// package doc); 0 and complete=false when b may still become one (more
// bytes needed); 0 and complete=true when it never will (hand off).
func scan(b []byte) (n int, complete bool) {
	end := bytes.Index(b, crlfcrlf)
	if end < 0 {
		// Before the head is complete, refuse as early as the bytes
		// allow: a bare LF or an odd request line need not wait.
		if bytes.IndexByte(b, '\n') >= 0 && !servableStart(b) {
			return 0, true
		}
		return 0, false
	}
	head := b[:end+2] // every line with its CRLF
	eol := bytes.Index(head, crlf)
	if !servableRequestLine(head[:eol]) {
		return 0, true
	}
	hosts := 0
	for rest := head[eol+2:]; len(rest) > 0; {
		i := bytes.Index(rest, crlf)
		line := rest[:i]
		rest = rest[i+2:]
		name, ok := servableField(line)
		if !ok {
			return 0, true
		}
		switch {
		case asciiEqualFold(name, "host"):
			// net/http answers an invalid Host with 400: let it.
			if !httpguts.ValidHostHeader(string(bytes.Trim(line[len(name)+1:], " \t"))) {
				return 0, true
			}
			hosts++
		case asciiEqualFold(name, "content-length"),
			asciiEqualFold(name, "transfer-encoding"),
			asciiEqualFold(name, "upgrade"),
			asciiEqualFold(name, "expect"):
			return 0, true
		}
	}
	if hosts != 1 {
		return 0, true
	}
	return end + 4, true
}

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
)

// servableStart reports whether the complete lines at the start of an
// unfinished head are all servable.
func servableStart(b []byte) bool {
	eol := bytes.Index(b, crlf)
	if eol < 0 || !servableRequestLine(b[:eol]) {
		return false
	}
	for rest := b[eol+2:]; ; {
		i := bytes.Index(rest, crlf)
		if i < 0 {
			// The last, unfinished line must not hold a bare LF.
			return bytes.IndexByte(rest, '\n') < 0
		}
		if _, ok := servableField(rest[:i]); !ok {
			return false
		}
		rest = rest[i+2:]
	}
}

// servableRequestLine: GET, HEAD or OPTIONS, one space, an origin-form
// target of visible ASCII without '#' whose path escapes are whole, one
// space, HTTP/1.1.
func servableRequestLine(l []byte) bool {
	var method string
	switch {
	case bytes.HasPrefix(l, []byte("GET ")):
		method = "GET"
	case bytes.HasPrefix(l, []byte("HEAD ")):
		method = "HEAD"
	case bytes.HasPrefix(l, []byte("OPTIONS ")):
		method = "OPTIONS"
	default:
		return false
	}
	l = l[len(method)+1:]
	target, ok := bytes.CutSuffix(l, []byte(" HTTP/1.1"))
	if !ok || len(target) == 0 || target[0] != '/' {
		return false
	}
	path := target
	if q := bytes.IndexByte(target, '?'); q >= 0 {
		path = target[:q]
	}
	for i, c := range target {
		if c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
		// net/http refuses a path with a broken escape (url.ParseRequestURI).
		if c == '%' && i < len(path) && (i+2 >= len(path) || !isHex(path[i+1]) || !isHex(path[i+2])) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// servableField checks one header line: a token, ':', a value of
// visible ASCII, obs-text, spaces and tabs. A line starting with a space
// or tab (obs-fold) is not a token.
func servableField(l []byte) (name []byte, ok bool) {
	colon := bytes.IndexByte(l, ':')
	if colon <= 0 {
		return nil, false
	}
	name = l[:colon]
	for _, c := range name {
		if !isTokenChar(c) {
			return nil, false
		}
	}
	if !visibleValue(l[colon+1:]) {
		return nil, false
	}
	return name, true
}

// visibleValue reports whether v holds only visible ASCII, obs-text,
// spaces and tabs: no control byte but tab, no DEL. It tests eight bytes
// at a time, as header parsers do: every header line of every request
// passes here, and a bearer token makes one of them hundreds of bytes.
func visibleValue(v []byte) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; len(v) >= 8; v = v[8:] {
		x := binary.LittleEndian.Uint64(v)
		// Nonzero when some byte is below 0x20, or is 0x7f (x^0x7f…
		// has a zero byte): Bit Twiddling Hacks' hasless and haszero,
		// which never miss a byte (they may flag a clean word, which
		// the byte loop then passes).
		del := x ^ 0x7f*ones
		if (x-0x20*ones)&^x&highs|(del-ones)&^del&highs != 0 && !visibleBytes(v[:8]) {
			return false
		}
	}
	return visibleBytes(v)
}

func visibleBytes(v []byte) bool {
	for _, c := range v {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// isTokenChar is RFC 9110's tchar.
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
