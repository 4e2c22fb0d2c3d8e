package cel

import "testing"

func TestLibraryAgentgatewayExampleExpressions(t *testing.T) {
	vars := Vars{"request": map[string]any{"headers": map[string]any{}}}
	for src, want := range map[string]any{
		// The traffic-token-exchange/extauthz example's Basic credentials
		// and cache TTL.
		`"Basic " + base64.encode("requester-client:requester-secret")`: "Basic cmVxdWVzdGVyLWNsaWVudDpyZXF1ZXN0ZXItc2VjcmV0",
		`json("{\"exp\": 1700000000}").exp - 5`:                         int64(1699999995),
		`json("{\"n\": 1.5}").n * 2.0`:                                  3.0,
		`json("[1, 2.5, {\"a\": 3}]")[2].a + 1`:                         int64(4),
		`string(base64.decode("aGk="))`:                                 "hi",
	} {
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
	x, _ := Compile(Request, "test", `json("{} {}")`)
	if _, err := x.Native(vars); err == nil {
		t.Error("json of two documents did not fail")
	}
}
