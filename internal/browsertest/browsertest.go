// Package browsertest starts the headless Chromium that feedmq's browser
// tests drive with chromedp, the same way for every test.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/chromedp/chromedp"
)

// Chromium returns the path of a Chromium: $FEEDMQ_CHROMIUM, or Debian's
// chromium. `make test` installs it and sets FEEDMQ_REQUIRE_CLIENTS, so
// there a missing one fails the test; elsewhere the test is skipped.
func Chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("FEEDMQ_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("FEEDMQ_REQUIRE_CLIENTS") != "" {
		t.Fatal("chromium not found: run `make test-deps`")
	}
	t.Skip("chromium not installed (make test-deps installs it)")
	return ""
}

// New starts a headless browser from chrome with a width x height window
// and a fresh profile, under ctx. Cancel it (before closing servers it
// holds connections to) when done. The flags keep it off the network
// beyond the test's own loopback servers.
func New(ctx context.Context, t testing.TB, chrome string, width, height int, opts ...chromedp.ContextOption) (context.Context, context.CancelFunc) {
	t.Helper()
	flags := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, flags...)
	bctx, cancelBrowser := chromedp.NewContext(actx, opts...)
	return bctx, func() {
		cancelBrowser()
		cancelAlloc()
	}
}
