package inventory

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// sameParse parses data both ways, the hosts: block one entry at a time
// (when the layout allows it) and as the whole file, checks that both
// give the same configuration or the same errors, and returns whether
// the first did split the block, with its error.
func sameParse(t *testing.T, path string, data []byte) (bool, error) {
	t.Helper()
	got, split, gotErr := parseMode(path, data, true)
	want, whole, wantErr := parseMode(path, data, false)
	if whole {
		t.Fatal("the whole-file parse split the hosts block")
	}
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		t.Fatalf("errors differ (split %v):\nsplit: %v\nwhole: %v", split, gotErr, wantErr)
	}
	if (got == nil) != (want == nil) {
		t.Fatalf("config: split %v, whole %v", got != nil, want != nil)
	}
	if got != nil {
		// Root pools are built twice from the same files: compare that
		// both have one or not, then the rest.
		for _, c := range []*Config{got, want} {
			if c.Roots != nil {
				c.Roots = nil
			}
			for _, ct := range c.Certs {
				ct.Anchor.Roots = nil
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("configs differ (split %v):\nsplit: %+v\nwhole: %+v", split, got, want)
		}
	}
	return split, gotErr
}

const chunkCerts = `certs:
  web.example:
    domains: [web.example]
    hosts: [web]
`

func TestSplitSameAsWhole(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "certpush.yaml")
	for _, tc := range []struct {
		name  string
		data  string
		split bool // whether the block must be read entry by entry
		err   []string
	}{
		{name: "comments and blank lines", split: true, data: `# inventory
ssh:
  user: deploy   # the push account
hosts:   # every host
  # the web servers

  web1:
    address: 10.0.0.1   # first

    groups: [web]
# a comment at column 0 between entries
      # and one indented deeper

  web2: {address: 10.0.0.2, groups: [web], port: 2222}
  "web3":
    address: 10.0.0.3
    groups:
      - web
  'web4': {address: "10.0.0.4", groups: ['web']}
  web5:
    address: 10.0.0.5
    groups: [web]
    verify: [
      "10.0.0.5:443",
      "10.0.0.5:8443"]
# trailing comment
` + chunkCerts},
		{name: "multi-line strings", split: true, data: chunkCerts + `hosts:
  web1:
    address: 10.0.0.1
    groups: [web]
    command: >-
      certnode
      --config /etc/certnode.yaml
    incoming: /srv/in
  web2:
    address: 10.0.0.2
    groups: [web]
    command: certnode
      --plain continued
    incoming: "/srv/
      quoted"
  web3:
    address: 10.0.0.3
    groups: [web]
    command: 'certnode
      --single'
`},
		{name: "literal block scalar refused at its line", split: true, data: chunkCerts + `hosts:
  web1:
    address: 10.0.0.1
    groups: [web]
    command: |
      certnode
      --two-lines
`, err: []string{":9: hosts.web1.command: control characters are not allowed"}},
		{name: "hosts before certs, CRLF", split: true, data: strings.ReplaceAll(`hosts:
  web1:
    address: 10.0.0.1
    groups: [web]
  web2: {address: 10.0.0.2, groups: [web]}
`+chunkCerts, "\n", "\r\n")},
		{name: "no final newline", split: true, data: chunkCerts + "hosts:\n  web1: {address: 10.0.0.1, groups: [web]}"},
		{name: "empty block", split: true, data: "hosts:\n# none yet\n" + chunkCerts,
			err: []string{":6: certs.web.example.hosts: unknown host or group \"web\""}},
		{name: "entry errors", split: true, data: chunkCerts + `ssh:
  port: 0
hosts:
  web1:
    adress: 10.0.0.1
    groups: [web]
  web1: {address: 10.0.0.9}
  web2: {address: 10.0.0.2, port: 99999, groups: [web, web1]}
  bad_name!: {address: 10.0.0.3}
  web3: 10.0.0.3
  web4: {address: 10.0.0.4, groups: [web], type: exec}
  web5:
    address: 10.0.0.5
    groups: [web]
    install: later
hosts:
  web9: {address: 10.0.0.9}
`, err: []string{
			":6: ssh.port: 0 out of range 1..65535",
			":8: hosts.web1: address is required",
			":9: unknown key \"adress\" in hosts.web1 (did you mean \"address\"?)",
			":11: duplicate key \"web1\" in hosts",
			":12: hosts.web2.port: 99999 out of range 1..65535",
			":12: group \"web1\" has the name of a host; rename one of them",
			":14: hosts.web3: want a mapping, got \"10.0.0.3\"",
			":15: hosts.web4: exec is required for type: exec (the command, as an argv list)",
			":19: hosts.web5.install: unknown install mode \"later\" (use now or cron)",
			":20: duplicate key \"hosts\" in top level",
		}},
		{name: "anchors and merge keys", split: false, data: chunkCerts + `hosts:
  web1: &base
    address: 10.0.0.1
    groups: [web]
  web2:
    <<: *base
    address: 10.0.0.2
`},
		{name: "anchor in hosts used by certs", split: false, data: `hosts:
  web1:
    address: 10.0.0.1
    groups: &g [web]
certs:
  web.example:
    domains: [web.example]
    hosts: *g
`},
		{name: "flow mapping", split: false, data: chunkCerts + "hosts: {web1: {address: 10.0.0.1, groups: [web]}}\n"},
		{name: "flow mapping over lines", split: false, data: chunkCerts + "hosts:\n  web1: {address: 10.0.0.1,\n  groups: [web]}\n"},
		{name: "quoted key over lines", split: false, data: chunkCerts + "hosts:\n  web1:\n    address: \"10.0.0.1\n  \"\n    groups: [web]\n"},
		{name: "a list", split: false, data: chunkCerts + "hosts:\n- web1\n- web2\n", err: []string{":6: hosts: want a mapping, got a list"}},
		{name: "tab", split: false, data: chunkCerts + "hosts:\n  web1:\n\taddress: 10.0.0.1\n"},
		{name: "less indented", split: false, data: chunkCerts + "hosts:\n   web1:\n    address: 10.0.0.1\n    groups: [web]\n  web2: {address: 10.0.0.2}\n"},
		{name: "explicit key", split: false, data: chunkCerts + "hosts:\n  ? web1\n  : {address: 10.0.0.1, groups: [web]}\n"},
		{name: "tagged", split: false, data: chunkCerts + "hosts: !!map\n  web1: {address: 10.0.0.1, groups: [web]}\n"},
		{name: "syntax error", split: false, data: chunkCerts + "hosts:\n  web1: {address: 10.0.0.1, groups: [web]\n  web2: {address: 10.0.0.2}\n"},
		{name: "lone CR", split: false, data: chunkCerts + "hosts:\r  web1: {address: 10.0.0.1, groups: [web]}\n"},
		{name: "hosts in a quoted string", split: false, data: "ssh:\n  command: \"certnode\nhosts:\n  web1: x\"\n" + chunkCerts},
	} {
		t.Run(tc.name, func(t *testing.T) {
			split, err := sameParse(t, path, []byte(tc.data))
			if split != tc.split {
				t.Errorf("split = %v, want %v (error %v)", split, tc.split, err)
			}
			got := errorLines(t, err)
			for _, w := range tc.err {
				found := false
				for _, g := range got {
					found = found || g == path+w
				}
				if !found {
					t.Errorf("no error %q in:\n%s", path+w, strings.Join(got, "\n"))
				}
			}
			if tc.err == nil && err != nil && tc.split {
				t.Errorf("unexpected error: %v", err)
			}
		})
	}
}

// TestSplitDeepEntry: a bad entry deep in a long list is reported at its
// own line, the long list read entry by entry.
func TestSplitDeepEntry(t *testing.T) {
	const n = 5000
	var b strings.Builder
	b.WriteString(chunkCerts + "hosts:\n")
	line := strings.Count(b.String(), "\n")
	wantLines := map[int]string{}
	for i := range n {
		switch i {
		case 1234:
			fmt.Fprintf(&b, "  # host %d, over three lines\n  node-%d:\n    address: 10.1.%d.%d\n    port: 99999\n", i, i, i/250, 1+i%250)
			line += 4
			wantLines[line] = fmt.Sprintf("hosts.node-%d.port: 99999 out of range 1..65535", i)
		case 3000:
			b.WriteString("  node-10: {address: 10.9.9.9, groups: [web]}\n")
			line++
			wantLines[line] = `duplicate key "node-10" in hosts`
		case 4321:
			fmt.Fprintf(&b, "  node-%d: {address: 10.1.%d.%d, groups: [web], adress: x}\n", i, i/250, 1+i%250)
			line++
			wantLines[line] = fmt.Sprintf("unknown key \"adress\" in hosts.node-%d (did you mean \"address\"?)", i)
		default:
			fmt.Fprintf(&b, "  node-%d: {address: 10.1.%d.%d, groups: [web]}\n", i, i/250, 1+i%250)
			line++
		}
	}
	path := filepath.Join(t.TempDir(), "certpush.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	split, err := sameParse(t, path, []byte(b.String()))
	if !split {
		t.Fatal("the block was not read entry by entry")
	}
	var want []string
	for _, l := range slices.Sorted(maps.Keys(wantLines)) {
		want = append(want, fmt.Sprintf("%s:%d: %s", path, l, wantLines[l]))
	}
	got := errorLines(t, err)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Without the bad entries, Load reads it entry by entry too, and
	// every host is there.
	good := strings.NewReplacer("    port: 99999\n", "    groups: [web]\n", ", adress: x}", "}",
		"node-10: {address: 10.9.9.9,", "node-3000: {address: 10.1.12.1,").Replace(b.String())
	if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	if split, err := sameParse(t, path, []byte(good)); !split || err != nil {
		t.Fatalf("split %v, err %v", split, err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := cfg.HostsFor("web.example")
	if err != nil || len(hosts) != n {
		t.Fatalf("HostsFor: %d hosts, %v", len(hosts), err)
	}
}

// TestSplitExample: the example configuration and the fuzz seeds parse
// the same both ways.
func TestSplitExample(t *testing.T) {
	data, err := os.ReadFile("testdata/certpush.yaml")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("testdata/certpush.yaml")
	if split, err := sameParse(t, abs, data); err != nil || !split {
		t.Fatalf("example: split %v, %v", split, err)
	}
}
