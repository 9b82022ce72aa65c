// Package report renders a status survey as one self-contained HTML page:
// a summary of the fleet, then per certificate a dense table of its
// endpoints, problems first. The page loads nothing: no scripts, no
// external style sheets, fonts or images, and its Content-Security-Policy
// forbids them, so it can be mailed, archived or served as it is.
package report

import (
	"bytes"
	"cmp"
	_ "embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/certpush/certpush/internal/atomicfile"
	"github.com/certpush/certpush/internal/verify"
)

// States lists the endpoint states in the order the page shows them:
// the worst first, aligned last.
var States = []string{verify.Expired, verify.Untrusted, verify.WrongName, verify.Unreachable, verify.Stale, verify.Aligned}

// Colors are the background colours of the states' rows and summary
// badges, distinct from each other and from everything else on the page
// (screenshots are checked for them).
var Colors = map[string]string{
	verify.Expired:     "#ff9e9e",
	verify.Untrusted:   "#e6a8ff",
	verify.WrongName:   "#ffc285",
	verify.Unreachable: "#a9c4f5",
	verify.Stale:       "#fff08a",
	verify.Aligned:     "#bdf0bd",
}

// stateCSS colours rows (.s-STATE) and badges (.b-STATE).
var stateCSS = func() template.CSS {
	var b strings.Builder
	for _, s := range States {
		fmt.Fprintf(&b, ".s-%s, .b-%s { background: %s; }\n", s, s, Colors[s])
	}
	return template.CSS(b.String()) //nolint:gosec // constants above
}()

// Page is what the page shows.
type Page struct {
	Generated time.Time
	Summary   string // the line status prints under its table
	// Hash names the fingerprint shown (md5, sha1 or sha256) for reports
	// with a Leaf; reports without one show Served, a SHA-256.
	Hash    string
	Reports []verify.Report
}

// rank orders states: known ones as in States, unknown ones just before
// aligned (something is wrong with them too).
func rank(state string) int {
	if i := slices.Index(States, state); i >= 0 {
		if state == verify.Aligned {
			return i + 1
		}
		return i
	}
	return len(States) - 1
}

type stateCount struct {
	State string
	N     int
}

type row struct {
	Host, Address, State, Detail string
	Fingerprint, Short           string
	Days, NotAfter               string
	Soon                         bool // expires within 14 days
}

type certView struct {
	Name, Anchor  string
	Want, WantShr string
	Counts        []stateCount
	Problems      int
	Rows          []row
	worst         int
}

type pageView struct {
	Generated string
	Summary   string
	Hash      string
	StateCSS  template.CSS
	Total     int
	Counts    []stateCount
	Certs     []certView
}

//go:embed page.html.tmpl
var pageTemplate string

var tmpl = template.Must(template.New("page").Parse(pageTemplate))

// Write renders the page to w.
func Write(w io.Writer, p Page) error {
	return tmpl.Execute(w, view(p))
}

// WriteFile renders the page to path, replaced atomically, mode 0644.
func WriteFile(path string, p Page) error {
	var buf bytes.Buffer
	if err := Write(&buf, p); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, buf.Bytes(), 0o644)
}

func view(p Page) pageView {
	hash := strings.ToUpper(cmp.Or(p.Hash, "sha256"))
	v := pageView{Generated: p.Generated.UTC().Format(time.RFC3339), Summary: p.Summary, Hash: hash, StateCSS: stateCSS, Total: len(p.Reports)}
	byCert := map[string]*certView{}
	var order []string
	total := map[string]int{}
	perCert := map[string]map[string]int{}
	for _, r := range p.Reports {
		c := byCert[r.Cert]
		if c == nil {
			c = &certView{Name: r.Cert, Anchor: "c" + strconv.Itoa(len(order)), worst: len(States) + 1}
			if r.Want != "" {
				c.Want = colonHex(r.Want)
				c.WantShr = short(c.Want)
			}
			byCert[r.Cert] = c
			perCert[r.Cert] = map[string]int{}
			order = append(order, r.Cert)
		}
		total[r.State]++
		perCert[r.Cert][r.State]++
		c.worst = min(c.worst, rank(r.State))
		if r.State != verify.Aligned {
			c.Problems++
		}
		c.Rows = append(c.Rows, makeRow(r, p.Hash))
	}
	v.Counts = counts(total)
	for _, name := range order {
		c := byCert[name]
		c.Counts = counts(perCert[name])
		slices.SortStableFunc(c.Rows, func(a, b row) int {
			return cmp.Or(cmp.Compare(rank(a.State), rank(b.State)), cmp.Compare(a.Host, b.Host), cmp.Compare(a.Address, b.Address))
		})
		v.Certs = append(v.Certs, *c)
	}
	slices.SortStableFunc(v.Certs, func(a, b certView) int {
		return cmp.Or(cmp.Compare(a.worst, b.worst), -cmp.Compare(a.Problems, b.Problems), cmp.Compare(a.Name, b.Name))
	})
	return v
}

// counts lists the states present, in page order, unknown states sorted
// by name before aligned.
func counts(m map[string]int) []stateCount {
	var out []stateCount
	for s, n := range m {
		out = append(out, stateCount{s, n})
	}
	slices.SortFunc(out, func(a, b stateCount) int {
		return cmp.Or(cmp.Compare(rank(a.State), rank(b.State)), cmp.Compare(a.State, b.State))
	})
	return out
}

func makeRow(r verify.Report, hash string) row {
	w := row{Host: r.Host, Address: r.Address, State: r.State, Detail: r.Error, Days: "-", NotAfter: "-"}
	switch {
	case r.Leaf != nil:
		w.Fingerprint, _ = verify.Format(r.Leaf.Raw, hash)
	case r.Served != "":
		w.Fingerprint = colonHex(r.Served)
	}
	w.Short = short(w.Fingerprint)
	if !r.NotAfter.IsZero() {
		w.NotAfter = r.NotAfter.UTC().Format(time.DateOnly)
		w.Days = strconv.Itoa(r.DaysLeft)
		w.Soon = r.DaysLeft < 14
	}
	return w
}

// colonHex renders a lowercase hex digest (a report's Served or Want) as
// openssl prints fingerprints; what is not hex is shown as it is.
func colonHex(h string) string {
	sum, err := hex.DecodeString(h)
	if err != nil {
		return h
	}
	return verify.Colons(sum)
}

// short is a fingerprint's first eight bytes, enough to tell two apart.
func short(fp string) string {
	const n = 8*3 - 1
	if len(fp) <= n {
		return fp
	}
	return fp[:n] + "…"
}
