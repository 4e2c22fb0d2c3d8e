package grants

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tailgate-dev/tailgate/internal/target"

	"github.com/tailscale/hujson"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden files")

func readPolicy(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testPlan(t testing.TB, env string, targets ...string) Plan {
	t.Helper()
	if len(targets) == 0 {
		targets = []string{"staging-box:443", "10.20.0.15:8443", "staging.internal.example.com:443"}
	}
	ts, err := target.ParseList(targets)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(env, ts, testTailnet())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// decode reads a HuJSON policy the way Tailscale does: as JSON once the
// comments and trailing commas are gone.
func decode(t *testing.T, policy []byte) map[string]any {
	t.Helper()
	std, err := hujson.Standardize(bytes.Clone(policy))
	if err != nil {
		t.Fatalf("result is not HuJSON: %v\n%s", err, policy)
	}
	var m map[string]any
	if err := json.Unmarshal(std, &m); err != nil {
		t.Fatalf("result is not a JSON object: %v", err)
	}
	return m
}

// isSubsequence reports whether every byte of small appears in big in
// order: Apply may only insert, never change or drop the customer's bytes.
func isSubsequence(small, big []byte) bool {
	i := 0
	for j := 0; j < len(big) && i < len(small); j++ {
		if big[j] == small[i] {
			i++
		}
	}
	return i == len(small)
}

func TestApplyKeepsCustomerPolicyAndAddsOurEntries(t *testing.T) {
	for _, file := range []string{"policy.hujson", "acls-only.hujson", "minified.hujson"} {
		t.Run(file, func(t *testing.T) {
			orig := readPolicy(t, file)
			plan := testPlan(t, "staging")
			out, err := Apply(orig, plan)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if !isSubsequence(orig, out) {
				t.Errorf("Apply changed or dropped bytes of the customer's file")
			}
			// Every line of the customer's file is still there, in order.
			var origLines []string
			for _, l := range strings.Split(string(orig), "\n") {
				if strings.TrimSpace(l) != "" && !strings.ContainsAny(l, "{}[]") {
					origLines = append(origLines, l)
				}
			}
			for _, l := range origLines {
				if !strings.Contains(string(out), l) {
					t.Errorf("line lost: %q", l)
				}
			}

			before, after := decode(t, orig), decode(t, out)
			for k, v := range before {
				if k == "grants" || k == "tagOwners" {
					continue
				}
				if !reflect.DeepEqual(after[k], v) {
					t.Errorf("section %q changed", k)
				}
			}
			owners, _ := after["tagOwners"].(map[string]any)
			if !reflect.DeepEqual(owners["tag:tailgate-staging"], []any{"autogroup:admin"}) {
				t.Errorf("tagOwners[tag:tailgate-staging] = %v", owners["tag:tailgate-staging"])
			}
			if bo, ok := before["tagOwners"].(map[string]any); ok {
				for k, v := range bo {
					if !reflect.DeepEqual(owners[k], v) {
						t.Errorf("customer's tag owner %q changed", k)
					}
				}
			}
			gotGrants, _ := after["grants"].([]any)
			beforeGrants, _ := before["grants"].([]any)
			if len(gotGrants) != len(beforeGrants)+len(plan.Grants) {
				t.Fatalf("grants: %d, want %d customer + %d ours", len(gotGrants), len(beforeGrants), len(plan.Grants))
			}
			if !reflect.DeepEqual(gotGrants[len(plan.Grants):], beforeGrants) && len(beforeGrants) > 0 {
				t.Errorf("customer's grants changed")
			}
			for i, g := range plan.Grants {
				var want any
				b, _ := json.Marshal(g)
				json.Unmarshal(b, &want)
				if !reflect.DeepEqual(gotGrants[i], want) {
					t.Errorf("grant %d = %v, want %v", i, gotGrants[i], want)
				}
			}
			if n := strings.Count(string(out), Marker("staging")); n != len(plan.Grants)+1 {
				t.Errorf("%d marker comments, want one per entry (%d)", n, len(plan.Grants)+1)
			}

			golden := filepath.Join("testdata", strings.TrimSuffix(file, ".hujson")+".applied.golden")
			if *update {
				os.WriteFile(golden, out, 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(out, want) {
				t.Errorf("Apply output differs from %s (review it, then go test -update):\n%s", golden, out)
			}
		})
	}
}

func TestRemoveRestoresPolicyExactly(t *testing.T) {
	for _, file := range []string{"policy.hujson", "acls-only.hujson", "minified.hujson"} {
		t.Run(file, func(t *testing.T) {
			orig := readPolicy(t, file)
			out, err := Apply(orig, testPlan(t, "staging"))
			if err != nil {
				t.Fatal(err)
			}
			back, err := Remove(out, "staging")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, orig) {
				t.Errorf("Remove(Apply(p)) != p:\n--- got\n%s\n--- want\n%s", back, orig)
			}
			if has, _ := Has(back, "staging"); has {
				t.Errorf("Has after Remove = true")
			}
		})
	}
}

func TestApplyIsIdempotentAndReplacesOnReconnect(t *testing.T) {
	orig := readPolicy(t, "policy.hujson")
	plan := testPlan(t, "staging")
	once, err := Apply(orig, plan)
	if err != nil {
		t.Fatal(err)
	}
	twice, err := Apply(once, plan)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(once, twice) {
		t.Errorf("Apply(Apply(p)) != Apply(p):\n%s", twice)
	}

	// Connecting again with other targets replaces, not adds.
	narrower := testPlan(t, "staging", "100.64.0.6:80")
	re, err := Apply(once, narrower)
	if err != nil {
		t.Fatal(err)
	}
	direct, _ := Apply(orig, narrower)
	if !bytes.Equal(re, direct) {
		t.Errorf("reconnect left old entries behind:\n%s", re)
	}
	if strings.Contains(string(re), `"dst": ["10.20.0.0/16"`) {
		t.Errorf("old grant still present")
	}
}

func TestTwoEnvironmentsCoexist(t *testing.T) {
	for _, file := range []string{"policy.hujson", "acls-only.hujson"} {
		t.Run(file, func(t *testing.T) {
			orig := readPolicy(t, file)
			staging, prod := testPlan(t, "staging"), testPlan(t, "prod", "100.64.0.6:443")
			a, err := Apply(orig, staging)
			if err != nil {
				t.Fatal(err)
			}
			ab, err := Apply(a, prod)
			if err != nil {
				t.Fatal(err)
			}
			for _, env := range []string{"staging", "prod"} {
				if has, err := Has(ab, env); !has || err != nil {
					t.Errorf("Has(%s) = %v, %v", env, has, err)
				}
			}
			m := decode(t, ab)
			owners := m["tagOwners"].(map[string]any)
			if owners["tag:tailgate-staging"] == nil || owners["tag:tailgate-prod"] == nil {
				t.Errorf("tag owners: %v", owners)
			}

			// Reconnecting staging leaves prod alone.
			again, err := Apply(ab, staging)
			if err != nil {
				t.Fatal(err)
			}
			if has, _ := Has(again, "prod"); !has {
				t.Errorf("reconnecting staging dropped prod")
			}
			if !bytes.Equal(again, ab) {
				t.Errorf("reconnecting staging with the same plan changed the file:\n%s", again)
			}

			// Removing prod gives back the staging-only file, byte for byte.
			onlyStaging, err := Remove(ab, "prod")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(onlyStaging, a) {
				t.Errorf("Remove(prod) != Apply(p, staging):\n%s", onlyStaging)
			}
			// Removing staging first, then prod, gives back the original.
			onlyProd, err := Remove(ab, "staging")
			if err != nil {
				t.Fatal(err)
			}
			if has, _ := Has(onlyProd, "prod"); !has {
				t.Errorf("Remove(staging) removed prod")
			}
			none, err := Remove(onlyProd, "prod")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(none, orig) {
				t.Errorf("removing both envs did not restore the file:\n%s", none)
			}
		})
	}
}

func TestEnvNamesThatArePrefixesStayApart(t *testing.T) {
	orig := readPolicy(t, "policy.hujson")
	a, _ := Apply(orig, testPlan(t, "prod"))
	ab, err := Apply(a, testPlan(t, "prod-2", "100.64.0.6:443"))
	if err != nil {
		t.Fatal(err)
	}
	back, err := Remove(ab, "prod")
	if err != nil {
		t.Fatal(err)
	}
	if has, _ := Has(back, "prod-2"); !has {
		t.Errorf("Remove(prod) removed prod-2's entries")
	}
}

func TestApplyMatchesSectionNamesLikeTailscale(t *testing.T) {
	// Tailscale reads policy keys case-insensitively: "TagOwners" is the
	// tag owners section, and adding a second "tagOwners" would hide it.
	orig := []byte("{\n\t\"TagOwners\": {\"tag:router\": [\"group:ops\"]},\n\t\"Grants\": [],\n}\n")
	out, err := Apply(orig, testPlan(t, "staging"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), `"tagOwners"`) || strings.Contains(string(out), `"grants"`) {
		t.Errorf("added a second section instead of using the existing one:\n%s", out)
	}
	back, _ := Remove(out, "staging")
	if !bytes.Equal(back, orig) {
		t.Errorf("Remove did not restore:\n%s", back)
	}
}

func TestApplyKeepsCustomersOwnTagOwner(t *testing.T) {
	orig := []byte(`{"tagOwners": {"tag:tailgate-staging": ["group:ops"]}, "grants": []}`)
	out, err := Apply(orig, testPlan(t, "staging"))
	if err != nil {
		t.Fatal(err)
	}
	owners := decode(t, out)["tagOwners"].(map[string]any)
	if !reflect.DeepEqual(owners["tag:tailgate-staging"], []any{"group:ops"}) {
		t.Errorf("customer's owner replaced: %v", owners)
	}
	if strings.Count(string(out), `"tag:tailgate-staging":`) != 1 {
		t.Errorf("tag owned twice:\n%s", out)
	}
	back, _ := Remove(out, "staging")
	if !bytes.Equal(back, orig) {
		t.Errorf("Remove did not restore:\n%s", back)
	}
}

func TestPolicyEditsRefuseBadFilesAndChangeNothing(t *testing.T) {
	tests := []struct {
		name    string
		policy  string
		wantErr string
	}{
		{"not hujson", `{"acls": [}`, "not valid HuJSON"},
		{"unterminated comment", "{ /* oops ", "not valid HuJSON"},
		{"empty file", "", "not valid HuJSON"},
		{"top level array", `[{"acls": []}]`, "not an object"},
		{"grants not an array", `{"grants": {"src": ["*"]}}`, `"grants" is not an array`},
		{"tagOwners not an object", `{"tagOwners": []}`, `"tagOwners" is not an object`},
		{"duplicate grants", `{"grants": [], "Grants": []}`, "appears twice"},
	}
	plan := testPlan(t, "staging")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.policy)
			keep := bytes.Clone(in)
			_, errA := Apply(in, plan)
			_, errR := Remove(in, "staging")
			_, errH := Has(in, "staging")
			for _, err := range []error{errA, errR, errH} {
				var pe *PolicyError
				if !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want *PolicyError containing %q", err, tt.wantErr)
				}
			}
			if !bytes.Equal(in, keep) {
				t.Errorf("input buffer was modified")
			}
		})
	}

	if _, err := Remove([]byte(`{}`), "Bad Env"); !errors.As(err, new(*EnvError)) {
		t.Errorf("Remove with bad env: %v", err)
	}
	bad := plan
	bad.Grants = []Grant{{Src: []string{plan.Tag}, Dst: []string{"10.0.0.1"}, IP: []string{"*"}}}
	if _, err := Apply([]byte(`{}`), bad); err == nil || !strings.Contains(err.Error(), "every port") {
		t.Errorf("Apply with a * port: %v", err)
	}
}

func TestRemoveWithoutOurEntriesChangesNothing(t *testing.T) {
	orig := readPolicy(t, "policy.hujson")
	out, err := Remove(orig, "staging")
	if err != nil || !bytes.Equal(out, orig) {
		t.Errorf("Remove on a file without our entries: %v", err)
	}
	if has, err := Has(orig, "staging"); has || err != nil {
		t.Errorf("Has = %v, %v", has, err)
	}
}

func TestFragmentPastesIntoAPolicy(t *testing.T) {
	plan := testPlan(t, "staging")
	frag := Fragment(plan)
	// A customer with no sections pastes it into an empty policy object.
	doc := []byte("{\n" + frag + "}\n")
	m := decode(t, doc)
	owners := m["tagOwners"].(map[string]any)
	if !reflect.DeepEqual(owners["tag:tailgate-staging"], []any{"autogroup:admin"}) {
		t.Errorf("fragment tagOwners = %v", owners)
	}
	if got := m["grants"].([]any); len(got) != len(plan.Grants) {
		t.Errorf("fragment grants = %v", got)
	}
	// What was pasted is recognised as ours: Has sees it, Remove takes the
	// entries out, Apply replaces them rather than adding a second copy.
	if has, err := Has(doc, "staging"); !has || err != nil {
		t.Errorf("Has(pasted fragment) = %v, %v", has, err)
	}
	applied, err := Apply(doc, plan)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(applied), Marker("staging")); n != len(plan.Grants)+1 {
		t.Errorf("Apply over a pasted fragment duplicated entries:\n%s", applied)
	}
}

// FuzzApplyRemove checks Remove(Apply(p)) == p and Apply's idempotence for
// any parseable policy object that does not already hold tailgate entries.
// Run with: go test ./internal/grants -run '^$' -fuzz FuzzApplyRemove -fuzztime 60s
func FuzzApplyRemove(f *testing.F) {
	for _, file := range []string{"policy.hujson", "acls-only.hujson", "minified.hujson"} {
		f.Add(readPolicy(f, file))
		f.Add(bytes.ReplaceAll(readPolicy(f, file), []byte("\n"), []byte("\r\n")))
	}
	for _, s := range []string{
		`{}`, `{ }`, "{\n}\n", `{"grants":[]}`, `{"grants":[ ]}`, `{"grants":[1,]}`, `{"grants":[1 ,]}`,
		`{"tagOwners":{},"grants":[],}`, `{"a":1,}`, `{"a":1 , }`, `{"a":1 /*c*/}`, "//c\n{\"a\":[]}//d\n",
		`{"TagOwners":{"x":1},"a":{},}`, "{\"acls\":[],\n\n// trailing\n}",
	} {
		f.Add([]byte(s))
	}
	plans := []Plan{testPlan(f, "staging"), testPlan(f, "prod", "100.64.0.6:443")}
	f.Fuzz(func(t *testing.T, p []byte) {
		if bytes.Contains(p, []byte("tailgate")) {
			return // already holds (something like) our entries
		}
		if _, err := hujson.Parse(bytes.Clone(p)); err != nil {
			return
		}
		orig := bytes.Clone(p)
		out, err := Apply(p, plans[0])
		if err != nil {
			if !IsPolicyError(err) {
				t.Fatalf("Apply: unexpected error kind %v", err)
			}
			return
		}
		if !bytes.Equal(p, orig) {
			t.Fatalf("Apply modified its input")
		}
		if _, err := hujson.Parse(bytes.Clone(out)); err != nil {
			t.Fatalf("Apply produced invalid HuJSON: %v\n%s", err, out)
		}
		back, err := Remove(out, "staging")
		if err != nil || !bytes.Equal(back, p) {
			t.Fatalf("Remove(Apply(p)) != p (err %v)\n--- p\n%q\n--- got\n%q", err, p, back)
		}
		again, err := Apply(out, plans[0])
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("Apply not idempotent (err %v)", err)
		}
		both, err := Apply(out, plans[1])
		if err != nil {
			t.Fatalf("Apply second env: %v", err)
		}
		rb, err := Remove(both, "prod")
		if err != nil || !bytes.Equal(rb, out) {
			t.Fatalf("Remove(prod) did not restore the staging-only policy (err %v)", err)
		}
		r1, err1 := Remove(both, "staging")
		r2, err2 := Remove(r1, "prod")
		if err1 != nil || err2 != nil || !bytes.Equal(r2, p) {
			t.Fatalf("removing both envs in the other order did not restore p\n%q\n%q", p, r2)
		}
	})
}

func TestWindowsLineEndingsAreKeptAndRecognised(t *testing.T) {
	lf := readPolicy(t, "policy.hujson")
	crlf := bytes.ReplaceAll(lf, []byte("\n"), []byte("\r\n"))
	plan := testPlan(t, "staging")

	out, err := Apply(crlf, plan)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(out, []byte("\n")); n != bytes.Count(out, []byte("\r\n")) {
		t.Errorf("Apply mixed bare LF into a CRLF file")
	}
	if back, _ := Remove(out, "staging"); !bytes.Equal(back, crlf) {
		t.Errorf("Remove did not restore the CRLF file")
	}

	// Applied with LF, then an editor turned the file into CRLF: our
	// entries are still found, so reconnect replaces and disconnect removes.
	applied, _ := Apply(lf, plan)
	converted := bytes.ReplaceAll(applied, []byte("\n"), []byte("\r\n"))
	if has, _ := Has(converted, "staging"); !has {
		t.Fatalf("Has does not see entries after CRLF conversion")
	}
	if back, _ := Remove(converted, "staging"); !bytes.Equal(back, crlf) {
		t.Errorf("Remove after CRLF conversion:\n%q", back)
	}
	if again, _ := Apply(converted, plan); !bytes.Equal(again, converted) {
		t.Errorf("reconnect after CRLF conversion is not a no-op")
	}
}

func TestApplyWritesCallersTagOwnersForHeadscale(t *testing.T) {
	// headscale refuses autogroup:admin as a tag owner; its callers name a
	// user or group instead.
	plan := testPlan(t, "staging")
	if !reflect.DeepEqual(plan.TagOwners, []string{"autogroup:admin"}) {
		t.Errorf("default TagOwners = %v", plan.TagOwners)
	}
	plan.TagOwners = []string{"tailgate-admin@", "group:ops"}
	orig := readPolicy(t, "acls-only.hujson")
	out, err := Apply(orig, plan)
	if err != nil {
		t.Fatal(err)
	}
	owners := decode(t, out)["tagOwners"].(map[string]any)
	if !reflect.DeepEqual(owners["tag:tailgate-staging"], []any{"tailgate-admin@", "group:ops"}) {
		t.Errorf("tag owners = %v", owners)
	}
	if !strings.Contains(Fragment(plan), `"tag:tailgate-staging": ["tailgate-admin@", "group:ops"]`) {
		t.Errorf("Fragment ignores TagOwners:\n%s", Fragment(plan))
	}
	if back, _ := Remove(out, "staging"); !bytes.Equal(back, orig) {
		t.Errorf("Remove did not restore")
	}
	plan.TagOwners = []string{`x"]}, "acls": [`}
	if _, err := Apply(orig, plan); err == nil {
		t.Errorf("a tag owner that breaks out of the string was accepted")
	}
}
