package report

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/verify"
)

// fleet is a synthetic survey: n endpoints over three certificates, every
// state present, in no particular order.
func fleet(n int) ([]verify.Report, map[string]int) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	certs := []string{"b.example", "a.example", "c.example"}
	var out []verify.Report
	want := map[string]int{}
	for i := range n {
		cert := certs[i%len(certs)]
		// c.example is all aligned; the others get every state.
		state := verify.Aligned
		if cert != "c.example" {
			switch i % 23 {
			case 1:
				state = verify.Expired
			case 2:
				state = verify.Untrusted
			case 4:
				state = verify.WrongName
			case 5, 7:
				state = verify.Unreachable
			case 8, 10, 11:
				state = verify.Stale
			}
		}
		r := verify.Report{
			Endpoint: verify.Endpoint{Cert: cert, Host: fmt.Sprintf("node-%05d", (i*7919)%n), Address: fmt.Sprintf("10.0.%d.%d:443", i/250, i%250),
				Want: strings.Repeat("ab", 32)},
			State: state,
		}
		if state != verify.Unreachable {
			r.Served = fmt.Sprintf("%064x", i)
			r.NotAfter = now.Add(time.Duration(i%90-5) * 24 * time.Hour)
			r.DaysLeft = i%90 - 5
		} else {
			r.Error = "dial tcp: connection refused"
		}
		if state == verify.Aligned {
			r.Served = r.Want
		}
		want[state]++
		out = append(out, r)
	}
	return out, want
}

var (
	rowRE     = regexp.MustCompile(`<tr class="s-([a-z_]+)" data-state="([a-z_]+)"><td>([^<]*)</td><td class="m">([^<]*)</td>`)
	sectionRE = regexp.MustCompile(`<section id="(c\d+)" class="cert[^"]*">\n<h2>([^<]*) `)
)

func render(t *testing.T, p Page) string {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, p); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestPageOrderCountsAndSelfContained(t *testing.T) {
	reports, want := fleet(3000)
	// A hostile inventory: names are shown, never interpreted.
	reports[0].Host = `<script>alert("x")</script>`
	reports[3].Error = `refused "quoted" <b>bold</b>`
	orig := slices.Clone(reports)
	page := render(t, Page{Generated: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), Summary: "2218/3000 aligned, ...", Hash: "sha256", Reports: reports})
	if !slices.EqualFunc(orig, reports, func(a, b verify.Report) bool { return a.Host == b.Host && a.State == b.State }) {
		t.Error("Write reordered the caller's reports")
	}

	// Counts: every endpoint once, with its state, as a row.
	got := map[string]int{}
	for _, m := range regexp.MustCompile(`\sdata-state="([a-z_]+)"`).FindAllStringSubmatch(page, -1) {
		got[m[1]]++
	}
	if len(want) != len(States) {
		t.Fatalf("the synthetic fleet lacks states: %v", want)
	}
	for _, s := range States {
		if got[s] != want[s] {
			t.Errorf("rows in state %s: %d, want %d", s, got[s], want[s])
		}
		if !strings.Contains(page, fmt.Sprintf(`<li class="b-%s" data-summary="%s"><b>%d</b> %s</li>`, s, s, want[s], s)) {
			t.Errorf("summary lacks the count of %s (%d)", s, want[s])
		}
	}
	if !strings.Contains(page, "3000 endpoints, 3 certificates, generated <time datetime=\"2026-03-01T12:00:00Z\">") {
		t.Error("page header lacks the totals or the time")
	}

	// Certificates with problems first, then by name; the clean one last.
	var certs []string
	for _, m := range sectionRE.FindAllStringSubmatch(page, -1) {
		certs = append(certs, m[2])
	}
	if !slices.Equal(certs, []string{"a.example", "b.example", "c.example"}) {
		t.Errorf("certificate order %v", certs)
	}
	if !strings.Contains(page, `class="cert clean">`+"\n<h2>c.example ") {
		t.Error("the all-aligned certificate is not marked clean")
	}

	// Rows: within each certificate, worse states first, then by host.
	sections := sectionRE.Split(page, -1)[1:]
	rows := 0
	for i, sec := range sections {
		prevRank, prevHost := -1, ""
		for _, m := range rowRE.FindAllStringSubmatch(sec, -1) {
			rows++
			if m[1] != m[2] {
				t.Fatalf("row class s-%s with data-state %s", m[1], m[2])
			}
			r, host := rank(m[2]), m[3]
			if r < prevRank || (r == prevRank && host < prevHost) {
				t.Fatalf("%s: row %s/%s after %d/%s", certs[i], m[2], host, prevRank, prevHost)
			}
			prevRank, prevHost = r, host
		}
	}
	if rows != len(reports) {
		t.Errorf("%d rows parsed, want %d", rows, len(reports))
	}
	first := rowRE.FindStringSubmatch(sections[0])
	if first[2] != verify.Expired {
		t.Errorf("first row of %s is %s, want expired", certs[0], first[2])
	}

	// Escaping: the script tag is text, the error quoted in its title.
	if strings.Contains(page, "<script") {
		t.Error("a host name's <script> reached the page unescaped")
	}
	if !strings.Contains(page, "<td>&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</td>") {
		t.Error("the escaped host name is missing")
	}
	if !strings.Contains(page, `title="refused &#34;quoted&#34; &lt;b&gt;bold&lt;/b&gt;">refused &#34;quoted&#34; &lt;b&gt;bold&lt;/b&gt;</td>`) {
		t.Error("the error detail is not escaped in its cell and title")
	}

	// Self-contained: nothing is fetched, whatever the browser.
	for _, bad := range []string{"http://", "https://", "src=", "<link", "url(", "@import", "<script", "<iframe", "<object", "<img"} {
		if strings.Contains(strings.ToLower(page), bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	if !strings.Contains(page, `content="default-src 'none'; style-src 'unsafe-inline'"`) {
		t.Error("page lacks its Content-Security-Policy")
	}

	// Each state has its own colour, used for its rows and its badge.
	seen := map[string]string{}
	for _, st := range States {
		c := Colors[st]
		if c == "" || seen[c] != "" {
			t.Errorf("state %s: colour %q (already %q's)", st, c, seen[c])
		}
		seen[c] = st
		if rule := fmt.Sprintf(".s-%s, .b-%s { background: %s; }", st, st, c); strings.Count(page, c) != 1 || !strings.Contains(page, rule) {
			t.Errorf("page lacks the one rule %q", rule)
		}
	}

	// Fingerprints: short in the cell, full in the title.
	full := colonHex(fmt.Sprintf("%064x", 31)) // reports[31] is stale
	if reports[31].State != verify.Stale {
		t.Fatalf("reports[31] is %s", reports[31].State)
	}
	if !strings.Contains(page, `<td class="m" title="`+full+`">`+full[:23]+"…</td>") {
		t.Errorf("fingerprint cell for %s missing", full)
	}
	if len(page) > 2_000_000 {
		t.Errorf("page for 3000 endpoints is %d bytes", len(page))
	}
}

func TestPageUnknownStateAndEmpty(t *testing.T) {
	page := render(t, Page{Reports: []verify.Report{
		{Endpoint: verify.Endpoint{Cert: "x", Host: "h1"}, State: verify.Aligned},
		{Endpoint: verify.Endpoint{Cert: "x", Host: "h2"}, State: "weird"},
		{Endpoint: verify.Endpoint{Cert: "x", Host: "h3"}, State: verify.Stale},
	}})
	var states []string
	for _, m := range rowRE.FindAllStringSubmatch(page, -1) {
		states = append(states, m[2])
	}
	if !slices.Equal(states, []string{"stale", "weird", "aligned"}) {
		t.Errorf("row order %v: an unknown state belongs among the problems", states)
	}
	if !strings.Contains(page, "no bundle imported") {
		t.Error("a certificate without a bundle does not say so")
	}

	empty := render(t, Page{Summary: "0/0 aligned"})
	if !strings.Contains(empty, "0 endpoints, 0 certificates") || strings.Contains(empty, ` data-state="`) {
		t.Errorf("empty survey page:\n%s", empty)
	}
}

func TestWriteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.html")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	reports, _ := fleet(30)
	if err := WriteFile(path, Page{Summary: "s", Reports: reports}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if !bytes.HasPrefix(data, []byte("<!DOCTYPE html>")) || bytes.Count(data, []byte(` data-state="`)) != 30 {
		t.Errorf("written page:\n%.300s", data)
	}
	if err := WriteFile(filepath.Join(t.TempDir(), "missing", "status.html"), Page{}); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}
