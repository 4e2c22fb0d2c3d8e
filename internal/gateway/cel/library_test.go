package cel

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestLibraryAgentgatewayExampleExpressions(t *testing.T) {
	vars := Vars{"request": map[string]any{"headers": map[string]any{}}}
	evalTable(t, vars, map[string]any{
		// The traffic-token-exchange/extauthz example's Basic credentials
		// and cache TTL.
		`"Basic " + base64.encode("requester-client:requester-secret")`: "Basic cmVxdWVzdGVyLWNsaWVudDpyZXF1ZXN0ZXItc2VjcmV0",
		`json("{\"exp\": 1700000000}").exp - 5`:                         int64(1699999995),
		`json("{\"n\": 1.5}").n * 2.0`:                                  3.0,
		`json("[1, 2.5, {\"a\": 3}]")[2].a + 1`:                         int64(4),
		`string(base64.decode("aGk="))`:                                 "hi",
	})
	x, _ := Compile(Request, "test", `json("{} {}")`)
	if _, err := x.Native(vars); err == nil {
		t.Error("json of two documents did not fail")
	}
}

func TestRedactedShowsOnlyThroughUnredacted(t *testing.T) {
	vars := Vars{"jwt": map[string]any{"sub": "alice", "rawToken": Redacted("tok-123")}}
	evalTable(t, vars, map[string]any{
		`jwt.rawToken.unredacted()`:             "tok-123",
		`toJson(jwt.rawToken)`:                  `"\u003credacted\u003e"`,
		`jwt.rawToken.unredacted().size()`:      int64(7),
		`jwt.rawToken == jwt.rawToken`:          true,
		`"Bearer " + jwt.rawToken.unredacted()`: "Bearer tok-123",
	})
	x, _ := Compile(Request, "test", `jwt.rawToken`)
	if got, _ := x.Native(vars); got != "<redacted>" {
		t.Errorf("jwt.rawToken as a log field = %v, want <redacted>", got)
	}
	x, _ = Compile(Request, "test", `string(jwt.rawToken)`)
	if got, err := x.Native(vars); err == nil && got != "<redacted>" {
		t.Errorf("string(jwt.rawToken) = %v", got)
	}
	x, _ = Compile(Request, "test", `jwt.sub.unredacted()`)
	if _, err := x.Native(vars); err == nil {
		t.Error("unredacted() of a plain string did not fail")
	}
}

func TestRedactedStaysHiddenInGoFormatting(t *testing.T) {
	r := Redacted("tok-123")
	b, _ := json.Marshal(map[string]any{"t": r})
	var buf strings.Builder
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "t", r, "m", map[string]any{"t": r})
	for _, s := range []string{fmt.Sprint(r), fmt.Sprintf("%v %+v %#v %s", r, r, r, r), string(b), buf.String()} {
		if strings.Contains(s, "tok-123") {
			t.Errorf("the token shows: %s", s)
		}
	}
}

// evalTable checks that each expression evaluates to its value.
func evalTable(t *testing.T, vars Vars, table map[string]any) {
	t.Helper()
	for src, want := range table {
		x, err := Compile(Request, "test", src)
		if err != nil {
			t.Errorf("%s: %v", src, err)
			continue
		}
		got, err := x.Native(vars)
		if err != nil || got != want {
			t.Errorf("%s = %v (%T), %v; want %v (%T)", src, got, got, err, want, want)
		}
	}
}
