// Package yamljson reads YAML as the values encoding/json works with, for
// documents that may be written in either (OpenAPI). YAML decodes a
// mapping whose keys are not all strings (an OpenAPI "responses" block:
// `200:`) as map[any]any, which JSON cannot encode; here every mapping
// becomes map[string]any, its keys written as text.
package yamljson

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// Decode parses YAML (JSON is YAML too) into map[string]any, []any and
// scalars.
func Decode(data []byte) (any, error) {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return jsonable(v), nil
}

func jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonable(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = jsonable(e)
		}
	}
	return v
}
