// Package browser runs browser flows — a short list of steps such as "go to
// this page, expect this text, fill this field, click, take a screenshot" —
// in headless Chromium, through a run's egress proxy.
//
// # Overview
//
// A flow file is YAML:
//
//	name: staging smoke
//	steps:
//	  - goto: http://app.internal.example/
//	  - expect_text: "Hello from the private app"
//	  - fill: {selector: "#q", value: "hi"}
//	  - click: "#go"
//	  - screenshot: home.png
//
// Each step is a mapping with exactly one key:
//
//   - goto: URL (http or https). The page must load; a page the tailgate
//     proxy refused (X-Tailgate-Refusal) fails the step with the proxy's reason.
//   - click: CSS selector of the element to click (waits until it is visible).
//   - fill: {selector, value} replaces the field's value by typing into it.
//   - expect_text: text that must appear in the page's visible text within
//     the step timeout.
//   - screenshot: PNG file name, written inside the output directory.
//
// Unknown keys are errors that name the line. [Load] / [Parse] read a flow;
// [Run] runs it and returns a [Report] (also written as report.json).
//
// # Nothing leaks around the proxy
//
// Chromium is started so that the run's proxy is its only way out:
// every scheme goes to --proxy-server, even loopback (<-loopback> in the
// bypass list), its own resolver answers nothing (--host-resolver-rules maps
// every name to NOTFOUND, so it never asks the host's DNS), QUIC is off,
// WebRTC may use proxied connections only, and background services that
// phone home (sync, component updates, safe browsing, translation, metrics,
// sign-in, spell-check dictionaries) are disabled by switches and by the
// preferences seeded into a fresh profile directory, removed afterwards.
// A test checks that a whole flow makes no request but its own. The package never imports tsnet: the proxy is the boundary.
package browser

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Flow is a parsed flow file.
type Flow struct {
	Name  string `json:"name"`
	Steps []Step `json:"steps"`
}

// StepKind names what a step does.
type StepKind string

const (
	StepGoto       StepKind = "goto"
	StepClick      StepKind = "click"
	StepFill       StepKind = "fill"
	StepExpectText StepKind = "expect_text"
	StepScreenshot StepKind = "screenshot"
)

var stepKinds = []StepKind{StepGoto, StepClick, StepFill, StepExpectText, StepScreenshot}

// Step is one step of a flow. Which fields are set depends on Kind.
type Step struct {
	Kind     StepKind `json:"kind"`
	URL      string   `json:"url,omitempty"`      // goto
	Selector string   `json:"selector,omitempty"` // click, fill
	Value    string   `json:"value,omitempty"`    // fill
	Text     string   `json:"text,omitempty"`     // expect_text
	File     string   `json:"file,omitempty"`     // screenshot, relative to the output directory
	Line     int      `json:"line"`               // line in the flow file
}

// String describes the step the way the flow file says it.
func (s Step) String() string {
	switch s.Kind {
	case StepGoto:
		return "goto " + s.URL
	case StepClick:
		return "click " + s.Selector
	case StepFill:
		return fmt.Sprintf("fill %s", s.Selector) // the value may be a secret
	case StepExpectText:
		return fmt.Sprintf("expect_text %q", s.Text)
	case StepScreenshot:
		return "screenshot " + s.File
	}
	return string(s.Kind)
}

// Load reads and parses a flow file; errors name the file and line.
func Load(path string) (Flow, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Flow{}, fmt.Errorf("read flow: %w", err)
	}
	f, err := Parse(b)
	if err != nil {
		return Flow{}, fmt.Errorf("%s:%w", path, err)
	}
	return f, nil
}

// lineError is a parse error at a line; Load prefixes the file name.
type lineError struct {
	line int
	msg  string
}

func (e *lineError) Error() string { return fmt.Sprintf("%d: %s", e.line, e.msg) }

func errAt(n *yaml.Node, format string, args ...any) error {
	return &lineError{line: n.Line, msg: fmt.Sprintf(format, args...)}
}

// Parse parses a flow from YAML. Errors have the form "LINE: message".
func Parse(b []byte) (Flow, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return Flow{}, &lineError{line: 1, msg: "flow is empty"}
	} else if err != nil {
		return Flow{}, yamlError(err)
	}
	if len(doc.Content) == 0 {
		return Flow{}, &lineError{line: 1, msg: "flow is empty"}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return Flow{}, errAt(root, "flow must be a mapping with name and steps")
	}
	var f Flow
	var sawSteps bool
	for i := 0; i < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "name":
			if v.Kind != yaml.ScalarNode {
				return Flow{}, errAt(v, "name must be a string")
			}
			f.Name = v.Value
		case "steps":
			sawSteps = true
			if v.Kind != yaml.SequenceNode {
				return Flow{}, errAt(v, "steps must be a list")
			}
			for j, sn := range v.Content {
				s, err := parseStep(sn, j+1)
				if err != nil {
					return Flow{}, err
				}
				f.Steps = append(f.Steps, s)
			}
		default:
			return Flow{}, errAt(k, "unknown key %q (want name, steps)", k.Value)
		}
	}
	if !sawSteps || len(f.Steps) == 0 {
		return Flow{}, errAt(root, "flow has no steps")
	}
	if f.Name == "" {
		f.Name = "flow"
	}
	return f, nil
}

func kindList() string {
	s := make([]string, len(stepKinds))
	for i, k := range stepKinds {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

func parseStep(n *yaml.Node, index int) (Step, error) {
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
		return Step{}, errAt(n, "step %d must be a mapping with exactly one of %s", index, kindList())
	}
	k, v := n.Content[0], n.Content[1]
	s := Step{Kind: StepKind(k.Value), Line: k.Line}
	scalar := func(what string) (string, error) {
		if v.Kind != yaml.ScalarNode || v.Value == "" {
			return "", errAt(v, "step %d: %s needs %s", index, k.Value, what)
		}
		return v.Value, nil
	}
	var err error
	switch s.Kind {
	case StepGoto:
		if s.URL, err = scalar("a URL"); err != nil {
			return s, err
		}
		u, perr := url.Parse(s.URL)
		if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return s, errAt(v, "step %d: goto needs an absolute http or https URL, not %q", index, s.URL)
		}
	case StepClick:
		s.Selector, err = scalar("a CSS selector")
	case StepExpectText:
		s.Text, err = scalar("the text to expect")
	case StepScreenshot:
		if s.File, err = scalar("a file name"); err != nil {
			return s, err
		}
		clean := filepath.Clean(s.File)
		if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
			return s, errAt(v, "step %d: screenshot file %q must stay inside the output directory", index, s.File)
		}
		if !strings.EqualFold(filepath.Ext(clean), ".png") {
			return s, errAt(v, "step %d: screenshot file %q must end in .png", index, s.File)
		}
		s.File = clean
	case StepFill:
		if v.Kind != yaml.MappingNode {
			return s, errAt(v, "step %d: fill needs {selector: ..., value: ...}", index)
		}
		var haveValue bool
		for i := 0; i < len(v.Content); i += 2 {
			fk, fv := v.Content[i], v.Content[i+1]
			if fv.Kind != yaml.ScalarNode {
				return s, errAt(fv, "step %d: fill %s must be a string", index, fk.Value)
			}
			switch fk.Value {
			case "selector":
				s.Selector = fv.Value
			case "value":
				s.Value, haveValue = fv.Value, true
			default:
				return s, errAt(fk, "step %d: unknown fill key %q (want selector, value)", index, fk.Value)
			}
		}
		if s.Selector == "" || !haveValue {
			return s, errAt(v, "step %d: fill needs both selector and value", index)
		}
	default:
		return s, errAt(k, "step %d: unknown step %q (want one of %s)", index, k.Value, kindList())
	}
	return s, err
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// yamlError turns a YAML syntax error into a lineError.
func yamlError(err error) error {
	line := 1
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
	}
	return &lineError{line: line, msg: "flow is not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
}
