package mcp

import "bytes"

// The fast path's JSON is read by scanning rather than decoding: a
// tools/call is a few members of which only the id, method and tool name
// are looked at, and a target's answer is passed on as it came. Decoding
// them with encoding/json into maps (the only way it tells "method" from
// "METHOD") cost tens of allocations per call. The scanner finds the
// members of an object in JSON already known to be valid (json.Valid)
// and leaves their values raw; a key it cannot take as it is (one with
// escapes) stops it, and the caller then hands the message to the code
// that decodes it in full.

// eachMember calls fn with the key and raw value of each member of the
// JSON object obj, in order, until fn returns false. obj must be valid
// JSON (leading and trailing space allowed). It reports false if obj is
// not an object, if a key has escapes, or if fn returned false.
func eachMember(obj []byte, fn func(key, val []byte) bool) bool {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return false
	}
	i = skipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return true
	}
	for i < len(obj) {
		// A key: obj[i] is its opening quote.
		end := stringEnd(obj, i)
		key := obj[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			return false
		}
		i = skipSpace(obj, end)
		i = skipSpace(obj, i+1) // past ':'
		vend := valueEnd(obj, i)
		if !fn(key, obj[i:vend]) {
			return false
		}
		i = skipSpace(obj, vend)
		if i >= len(obj) || obj[i] == '}' {
			return true
		}
		i = skipSpace(obj, i+1) // past ','
	}
	return true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// stringEnd is the index just past the string that starts at b[i] (a
// quote).
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// valueEnd is the index just past the value that starts at b[i].
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	}
	for ; i < len(b); i++ {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i
		}
	}
	return i
}

// plainString is the content of the JSON string s if it has no escapes.
func plainString(s []byte) (string, bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' || bytes.IndexByte(s, '\\') >= 0 {
		return "", false
	}
	return string(s[1 : len(s)-1]), true
}
