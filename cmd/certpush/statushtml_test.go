package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/report"
	"github.com/certpush/certpush/internal/verify"
)

// chromiumBin finds Debian's chromium. Without it the test is skipped,
// but fails in CI: CI must render the page for real.
func chromiumBin(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "chromium is not installed (scripts/deps.sh installs it)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// runChromium runs headless chromium with a profile and home of its own,
// killed with all its helpers after a minute, and returns its stdout.
func runChromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	argv := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-extensions", "--force-color-profile=srgb", "--hide-scrollbars",
		"--user-data-dir=" + filepath.Join(dir, "profile")}, args...)
	cmd := exec.CommandContext(ctx, bin, argv...)
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_CACHE_HOME="+filepath.Join(dir, "cache"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	// Helpers left behind by a crash go with the group.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if err != nil {
		t.Fatalf("chromium %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

var domRowRE = regexp.MustCompile(`<tr\b[^>]*\bdata-state="([a-z_]+)"[^>]*><td>([^<]*)</td>`)

// TestStatusHTMLMatchesJSON renders the page of a real fleet (aligned,
// stale, untrusted and unreachable endpoints) in headless chromium: the
// DOM holds the endpoints of status --json, each in its state, and the
// screenshot shows the colour of each state present and of no other.
func TestStatusHTMLMatchesJSON(t *testing.T) {
	chromium := chromiumBin(t)
	w := newWorld(t, 4)
	w.importNew()
	if code, _, _ := w.certpush("push", "--hosts", "node-1"); code != 0 {
		t.Fatalf("partial push exited %d", code)
	}
	untrusted, down := w.fleet.Hosts[2], w.fleet.Hosts[3]
	if err := untrusted.StopNginx(); err != nil {
		t.Fatal(err)
	}
	serveSelfSigned(t, w, untrusted)
	if err := down.StopNginx(); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	page := filepath.Join(dir, "status.html")
	code, stdout, _ := w.certpush("status", "--json", "--html", page)
	if code != 1 {
		t.Errorf("status --json --html exited %d, want 1 (not all aligned)", code)
	}
	var out struct {
		Endpoints []verify.Report `json:"endpoints"`
		Counts    map[string]int  `json:"counts"`
		Summary   string          `json:"summary"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("status --json with --html is not JSON: %v", err)
	}
	wantStates := map[string]string{"node-1": verify.Aligned, "node-2": verify.Stale, untrusted.Name: verify.Untrusted, down.Name: verify.Unreachable}
	jsonStates := map[string]string{}
	for _, e := range out.Endpoints {
		jsonStates[e.Host] = e.State
	}
	if !maps.Equal(jsonStates, wantStates) {
		t.Fatalf("status --json: %v, want %v", jsonStates, wantStates)
	}
	fi, err := os.Stat(page)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("page mode %v, want 0644", fi.Mode().Perm())
	}
	raw, _ := os.ReadFile(page)
	for _, bad := range []string{"http://", "https://", "src=", "<link", "url("} {
		if bytes.Contains(raw, []byte(bad)) {
			t.Errorf("page refers to something outside itself: %q", bad)
		}
	}

	// The DOM, as chromium built it: one row per endpoint, in its state.
	dom := string(runChromium(t, chromium, "--dump-dom", "file://"+page))
	domCounts, domStates := map[string]int{}, map[string]string{}
	for _, m := range domRowRE.FindAllStringSubmatch(dom, -1) {
		domCounts[m[1]]++
		domStates[m[2]] = m[1]
	}
	if !maps.Equal(domCounts, out.Counts) {
		t.Errorf("states in the DOM %v, status --json counts %v", domCounts, out.Counts)
	}
	if !maps.Equal(domStates, jsonStates) {
		t.Errorf("hosts in the DOM %v, status --json %v", domStates, jsonStates)
	}
	if !strings.Contains(dom, `<p class="summary">`+out.Summary+`</p>`) {
		t.Errorf("DOM lacks the summary %q", out.Summary)
	}
	for state, n := range out.Counts {
		if !strings.Contains(dom, fmt.Sprintf(`data-summary="%s"><b>%d</b>`, state, n)) {
			t.Errorf("DOM lacks the badge %d %s", n, state)
		}
	}
	// Problems first: untrusted, unreachable, stale, aligned.
	var order []string
	for _, m := range domRowRE.FindAllStringSubmatch(dom, -1) {
		order = append(order, m[1])
	}
	if want := []string{verify.Untrusted, verify.Unreachable, verify.Stale, verify.Aligned}; strings.Join(order, ",") != strings.Join(want, ",") {
		t.Errorf("row order %v, want %v", order, want)
	}

	// The picture: the right size, each present state's colour on it,
	// the others' not.
	shot := filepath.Join(dir, "status.png")
	runChromium(t, chromium, "--screenshot="+shot, "--window-size=1200,900", "file://"+page)
	if keep := os.Getenv("CERTPUSH_KEEP_SCREENSHOT"); keep != "" {
		if data, err := os.ReadFile(shot); err == nil {
			_ = os.WriteFile(keep, data, 0o644)
		}
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1200 || b.Dy() != 900 {
		t.Errorf("screenshot is %dx%d, want 1200x900", b.Dx(), b.Dy())
	}
	pixels := colourCounts(img)
	for _, state := range report.States {
		n := pixels[parseColour(t, report.Colors[state])]
		t.Logf("screenshot: %d pixels of %s (%s)", n, state, report.Colors[state])
		switch present := out.Counts[state] > 0; {
		case present && n < 2000:
			t.Errorf("screenshot: %d pixels of %s's colour %s, want a row and a badge of it", n, state, report.Colors[state])
		case !present && n > 50:
			t.Errorf("screenshot: %d pixels of %s's colour %s, but no endpoint is %s", n, state, report.Colors[state], state)
		}
	}

	// The page is extra: the table and exit code are as without it.
	page2 := filepath.Join(dir, "table.html")
	code, stdout, _ = w.certpush("status", "--html", page2)
	if code != 1 || !strings.Contains(stdout, "CERT") || !strings.Contains(stdout, out.Summary) {
		t.Errorf("status --html: exit %d, table:\n%s", code, stdout)
	}
	if data, err := os.ReadFile(page2); err != nil || len(domRowRE.FindAllString(string(data), -1)) != len(out.Endpoints) {
		t.Errorf("page beside the table: %v\n%.400s", err, data)
	}
	if code, _, stderr := w.certpush("status", "--html", filepath.Join(dir, "missing", "x.html")); code != 1 || !strings.Contains(stderr, "write status page") {
		t.Errorf("page into a missing directory: exit %d, stderr %q", code, stderr)
	}
}

type rgb struct{ r, g, b uint8 }

func colourCounts(img image.Image) map[rgb]int {
	n := map[rgb]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			n[rgb{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8)}]++
		}
	}
	return n
}

func parseColour(t *testing.T, hex string) rgb {
	t.Helper()
	v, err := strconv.ParseUint(strings.TrimPrefix(hex, "#"), 16, 32)
	if err != nil || len(hex) != 7 {
		t.Fatalf("colour %q", hex)
	}
	return rgb{uint8(v >> 16), uint8(v >> 8), uint8(v)}
}
