package pathnorm

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	for _, c := range []struct {
		in, want string
		err      error
	}{
		{"/", "/", nil},
		{"/admin/secret.txt", "/admin/secret.txt", nil},
		{"//admin/secret.txt", "/admin/secret.txt", nil},
		{"/admin//secret.txt", "/admin/secret.txt", nil},
		{"/public/../admin/secret.txt", "/admin/secret.txt", nil},
		{"/./admin/secret.txt", "/admin/secret.txt", nil},
		{"/%2e/admin/secret.txt", "/admin/secret.txt", nil},
		{"/%2E%2e/admin", "/admin", nil},
		{"/x/%2e%2e/admin/secret.txt", "/admin/secret.txt", nil},
		{"/../../../admin", "/admin", nil},
		{"/a/b/..", "/a/", nil},
		{"/a/b/.", "/a/b/", nil},
		{"/a/", "/a/", nil},
		{"/a//", "/a/", nil},
		{"/..", "/", nil},
		{"/%41dmin", "/Admin", nil},
		{"/%7euser/%5f", "/~user/_", nil},
		{"/a%3fb", "/a%3Fb", nil},
		{"/a%3Fb", "/a%3Fb", nil},
		{"/%252e%252e/admin", "/%252e%252e/admin", nil},
		{"/caf\xc3\xa9", "/caf%C3%A9", nil},
		{"/caf%c3%a9", "/caf%C3%A9", nil},
		{"/a b", "/a%20b", nil},
		{"/a:b@c!$&'()*+,=", "/a:b@c!$&'()*+,=", nil},
		{"/%2fadmin/secret.txt", "", ErrEncodedSlash},
		{"/x/..%2fadmin/secret.txt", "", ErrEncodedSlash},
		{"/x/..%5Cadmin", "", ErrEncodedSlash},
		{"/x\\..\\admin", "", ErrBackslash},
		{"/admin%00.txt", "", ErrNUL},
		{"/a%0d%0aSet-Cookie:x", "", ErrControl},
		{"/a%zz", "", ErrBadEscape},
		{"/a%2", "", ErrBadEscape},
		{"/a%", "", ErrBadEscape},
		{"/%c0%ae%c0%ae/admin", "", ErrBadUTF8},
		{"/%c3/%a9", "", ErrBadUTF8},
		{"/\xff", "", ErrBadUTF8},
		{"/admin;x/secret.txt", "", ErrSemicolon},
		{"/admin#frag", "", ErrFragment},
		{"admin", "", ErrNotAbsolute},
		{"", "", ErrNotAbsolute},
	} {
		got, err := Normalize(c.in, Options{})
		if !errors.Is(err, c.err) || (err == nil && got.Path != c.want) {
			t.Errorf("Normalize(%q) = %q, %v; want %q, %v", c.in, got.Path, err, c.want, c.err)
		}
		if err == nil && got.Match != got.Path {
			t.Errorf("Normalize(%q): Match %q differs from Path %q without an allowed oddity", c.in, got.Match, got.Path)
		}
	}
}

// TestNormalizePathAllowed checks the opt-outs: the oddity is kept in
// Path, and Match is the lenient reading routes are chosen by.
func TestNormalizePathAllowed(t *testing.T) {
	all := Options{AllowEncodedSlashes: true, AllowSemicolons: true}
	for _, c := range []struct{ in, path, match string }{
		{"/api/group%2fproject", "/api/group%2Fproject", "/api/group/project"},
		{"/api/..%2F..%2Fadmin", "/api/..%2F..%2Fadmin", "/admin"},
		{"/%2fadmin/secret.txt", "/%2Fadmin/secret.txt", "/admin/secret.txt"},
		{"/a%5cb", "/a%5Cb", "/a/b"},
		{"/admin;x/secret.txt", "/admin;x/secret.txt", "/admin/secret.txt"},
		{"/x/..;/admin", "/admin", "/admin"},
		{"/m;a=1;b=2/n", "/m;a=1;b=2/n", "/m/n"},
	} {
		got, err := Normalize(c.in, all)
		if err != nil || got.Path != c.path || got.Match != c.match {
			t.Errorf("Normalize(%q) = %+v, %v; want path %q match %q", c.in, got, err, c.path, c.match)
		}
	}
	// Allowing one oddity does not allow the other, nor NUL.
	if _, err := Normalize("/a;b%2Fc", Options{AllowEncodedSlashes: true}); !errors.Is(err, ErrSemicolon) {
		t.Errorf("semicolon with only encoded slashes allowed: %v", err)
	}
	if _, err := Normalize("/a%00", all); !errors.Is(err, ErrNUL) {
		t.Errorf("NUL with everything allowed: %v", err)
	}
	if !IsOptional(ErrEncodedSlash) || !IsOptional(ErrSemicolon) || IsOptional(ErrBackslash) {
		t.Error("IsOptional misclassifies refusals")
	}
}

// seeds are the attack forms of issue 11 and their relatives.
var seeds = []string{
	"//admin/secret.txt", "/public/../admin/secret.txt", "/./admin/secret.txt",
	"/%2fadmin/secret.txt", "/%2e/admin/secret.txt", "/x/%2e%2e/admin/secret.txt",
	"/x/..%2fadmin/secret.txt", "//exact-admin", "/%252e%252e/admin", "/%2E%2e/admin",
	"/%c0%ae%c0%ae/admin", "/admin;x/secret.txt", "/x/..;/admin", "/admin#frag",
	"/x\\..\\admin", "/admin%00.txt", "/a/b/..", "/caf\xc3\xa9", "/a%zz", "/",
}

// FuzzNormalizePath: whatever the input, Normalize never panics, and what
// it accepts is absolute, has no empty, `.` or `..` segment, and
// normalizes to itself.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range seeds {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, in string, lenient bool) {
		o := Options{AllowEncodedSlashes: lenient, AllowSemicolons: lenient}
		checkAsIs(t, in, o)
		got, err := Normalize(in, o)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("Normalize(%q): error %v is not a *pathnorm.Error", in, err)
			}
			return
		}
		for _, p := range []string{got.Path, got.Match} {
			checkCanonical(t, in, p)
		}
		again, err := Normalize(got.Path, o)
		if err != nil || again != got {
			t.Fatalf("not idempotent: %q → %+v → %+v, %v", in, got, again, err)
		}
		m, err := Normalize(got.Match, Options{})
		if err != nil || m.Path != got.Match {
			t.Fatalf("Match %q of %q is not a strict normal form: %q, %v", got.Match, in, m.Path, err)
		}
	})
}

func checkCanonical(t *testing.T, in, p string) {
	t.Helper()
	if !strings.HasPrefix(p, "/") {
		t.Fatalf("Normalize(%q) = %q: does not start with /", in, p)
	}
	if strings.Contains(p, "//") {
		t.Fatalf("Normalize(%q) = %q: contains //", in, p)
	}
	segs := strings.Split(strings.TrimSuffix(p[1:], "/"), "/")
	for _, s := range segs {
		if s == "." || s == ".." || strings.HasPrefix(s, "..;") || strings.HasPrefix(s, ".;") {
			t.Fatalf("Normalize(%q) = %q: dot segment %q left", in, p, s)
		}
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x21 || c > 0x7e || c == '\\' || c == '#' || c == '?' {
			t.Fatalf("Normalize(%q) = %q: raw byte %q in output", in, p, c)
		}
	}
}

// checkAsIs: the one-pass check of paths Normalize keeps as they are
// agrees with the full reading.
func checkAsIs(t *testing.T, in string, o Options) {
	t.Helper()
	if in == "" || in[0] != '/' || !asIs(in) {
		return
	}
	if full, err := normalize(in, o); err != nil || full != (Result{Path: in, Match: in}) {
		t.Fatalf("asIs(%q), but the full reading gives %+v, %v", in, full, err)
	}
}

func TestAsIsAgreesWithTheFullReading(t *testing.T) {
	kept := []string{"/", "/a", "/a/", "/api/v1/users/123", "/.well-known/x", "/a/.b/..c/", "/a-b_c~d/e!f$g&h'i(j)k*l+m,n=o:p@q"}
	for _, p := range kept {
		if !asIs(p) {
			t.Errorf("asIs(%q) = false, want true", p)
		}
	}
	for _, p := range append(append([]string{}, seeds...), kept...) {
		checkAsIs(t, p, Options{})
		checkAsIs(t, p, Options{AllowEncodedSlashes: true, AllowSemicolons: true})
	}
	for _, p := range []string{"//", "/a//b", "/.", "/..", "/a/./b", "/a/../b", "/a/.", "/%41", "/a;b", "/a b", "/a\\b", "/a?b", "/é", "/a\x00"} {
		if asIs(p) {
			t.Errorf("asIs(%q) = true, want false", p)
		}
	}
}
