package browser

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// runStep performs one step; for a screenshot it returns the file written
// (relative to OutDir).
func runStep(ctx context.Context, s Step, opts Options) (string, error) {
	switch s.Kind {
	case StepGoto:
		return "", gotoPage(ctx, s.URL)
	case StepClick:
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(s.Selector))); err != nil {
			return "", fmt.Errorf("click %s: %w", s.Selector, err)
		}
		return "", nil
	case StepFill:
		if err := chromedp.Do(ctx,
			chromedp.Clear(chromedp.CSS(s.Selector)),
			chromedp.SendKeys(chromedp.CSS(s.Selector), s.Value),
		); err != nil {
			return "", fmt.Errorf("fill %s: %w", s.Selector, err)
		}
		return "", nil
	case StepExpectText:
		return "", expectText(ctx, s.Text)
	case StepScreenshot:
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			return "", fmt.Errorf("take screenshot: %w", err)
		}
		path := filepath.Join(opts.OutDir, s.File)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return "", fmt.Errorf("save screenshot: %w", err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			return "", fmt.Errorf("save screenshot: %w", err)
		}
		return s.File, nil
	}
	return "", fmt.Errorf("unknown step %q", s.Kind)
}

// gotoPage loads a page and fails if it did not load or if the tailgate
// proxy answered instead of the target.
func gotoPage(ctx context.Context, rawURL string) error {
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(rawURL))
	if err != nil {
		var le *chromedp.LoadError
		if errors.As(err, &le) && strings.Contains(le.ErrorText, "TUNNEL_CONNECTION_FAILED") {
			return fmt.Errorf("load %s: %s: the proxy refused the connection (its events for this host give the reason)", safeURL(rawURL), le.ErrorText)
		}
		return fmt.Errorf("load %s: %w", safeURL(rawURL), err)
	}
	if resp == nil {
		return nil
	}
	if code := header(resp.Headers, "X-Tailgate-Refusal"); code != "" {
		text, _ := pageState(ctx)
		return fmt.Errorf("load %s: refused by the tailgate proxy (%s, HTTP %d): %s",
			safeURL(rawURL), code, resp.Status, strings.TrimSpace(text.Text))
	}
	return nil
}

type pageSnapshot struct {
	URL  string `json:"url"`
	Text string `json:"text"`
}

func pageState(ctx context.Context) (pageSnapshot, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[pageSnapshot](
		`({url: location.href, text: document.body ? document.body.innerText : ""})`))
}

// expectText waits until the page's visible text contains want.
func expectText(ctx context.Context, want string) error {
	var last pageSnapshot
	for {
		snap, err := pageState(ctx)
		if err == nil {
			// A page in the middle of navigating has no document to read;
			// keep the last good snapshot for the message.
			last = snap
			if strings.Contains(snap.Text, want) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			shown := strings.Join(strings.Fields(last.Text), " ")
			if len(shown) > 200 {
				shown = shown[:200] + "…"
			}
			return fmt.Errorf("expected text %q did not appear on %s; the page shows: %q", want, safeURL(last.URL), shown)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// safeURL drops the query and fragment, which may carry secrets.
func safeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}

func header(h network.Headers, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return fmt.Sprint(v)
		}
	}
	return ""
}
