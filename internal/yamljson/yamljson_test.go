package yamljson

import (
	"encoding/json"
	"testing"
)

func TestDecodeGivesJSONEncodableValues(t *testing.T) {
	v, err := Decode([]byte("responses:\n  200: {description: ok}\n  default: [a, {404: x}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"responses":{"200":{"description":"ok"},"default":["a",{"404":"x"}]}}`; string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
	if _, err := Decode([]byte("a: [1")); err == nil {
		t.Error("malformed YAML decoded")
	}
}
