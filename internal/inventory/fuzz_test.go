package inventory

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/yamlconf"
)

// FuzzParse checks that Parse never panics, and that whatever it accepts
// is a usable configuration.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("testdata/certpush.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte("certs: {a: {domains: [a.example], hosts_file: list, canary: [h1]}}\n"))
	f.Add([]byte("certs:\n  a: {domains: [a.example], hosts: [g]}\nhosts:\n  # c\n  h1: {address: ::1, groups: [g]}\n  'h2':\n    address: h2\n    groups: [g]\n"))

	// A host list the inputs can name with hosts_file: list.
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "list"), []byte("h1\nu@h2:2222\n[::1]:22\n::2\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "certpush.yaml")

	f.Fuzz(func(t *testing.T, data []byte) {
		// The hosts: block read entry by entry means what the whole
		// file's parse does.
		sameParse(t, cfgPath, data)
		cfg, err := Parse(cfgPath, data)
		if err != nil {
			if cfg != nil {
				t.Fatal("config returned with an error")
			}
			checkErrors(t, err)
			return
		}
		checkConfig(t, cfg)
	})
}

func checkErrors(t *testing.T, err error) {
	t.Helper()
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var ie *Error
		if !errors.As(e, &ie) {
			t.Fatalf("error %q is not an *Error", e)
		}
		if ie.File == "" || ie.Line < 0 || ie.Msg == "" {
			t.Fatalf("incomplete error %#v", ie)
		}
	}
}

func checkHost(t *testing.T, h Host) {
	t.Helper()
	if h.Name == "" || h.Address == "" || h.User == "" || h.Incoming == "" || h.Command == "" {
		t.Fatalf("host not resolved: %+v", h)
	}
	if h.Port < 1 || h.Port > 65535 {
		t.Fatalf("host %s: port %d", h.Name, h.Port)
	}
	host, port, err := net.SplitHostPort(h.SSHAddress())
	if err != nil || host != h.Address || port != strconv.Itoa(h.Port) {
		t.Fatalf("host %s: SSHAddress() = %q", h.Name, h.SSHAddress())
	}
	for _, v := range h.Verify {
		if err := yamlconf.CheckEndpoint(v, false); err != nil {
			t.Fatalf("host %s: verify %q: %v", h.Name, v, err)
		}
	}
}

func checkConfig(t *testing.T, cfg *Config) {
	t.Helper()
	if len(cfg.Certs) == 0 || len(cfg.CertOrder) != len(cfg.Certs) {
		t.Fatalf("certs %d, order %q", len(cfg.Certs), cfg.CertOrder)
	}
	s := cfg.SSH
	if s.User == "" || s.Port < 1 || s.Port > 65535 || s.Parallel < 1 || s.Timeout <= 0 || s.ConnectTimeout <= 0 ||
		s.Incoming == "" || s.Command == "" || s.KnownHosts == "" || cfg.StateDir == "" {
		t.Fatalf("ssh settings not resolved: %+v", s)
	}
	if !slices.Contains(KeyTypes, cfg.ACME.KeyType) || cfg.ACME.Directory == "" {
		t.Fatalf("acme settings not resolved: %+v", cfg.ACME)
	}
	groups := map[string]bool{}
	for name, h := range cfg.Hosts {
		if h.Name != name {
			t.Fatalf("host %q named %q", name, h.Name)
		}
		checkHost(t, *h)
		for _, g := range h.Groups {
			groups[g] = true
		}
	}
	for g := range groups {
		if cfg.Hosts[g] != nil {
			t.Fatalf("%q is a host and a group", g)
		}
	}
	for _, name := range cfg.CertOrder {
		c := cfg.Certs[name]
		if c == nil || c.Name != name {
			t.Fatalf("cert %q missing or misnamed", name)
		}
		if err := bundle.ValidName(name); err != nil {
			t.Fatalf("cert name: %v", err)
		}
		if len(c.Domains) == 0 {
			t.Fatalf("cert %s: no domains", name)
		}
		for _, d := range c.Domains {
			if _, err := yamlconf.CheckDomain(d); err != nil {
				t.Fatalf("cert %s: %v", name, err)
			}
		}
		if c.Install != InstallNow && c.Install != InstallCron {
			t.Fatalf("cert %s: install %q", name, c.Install)
		}
		if c.SNI() == "" {
			t.Fatalf("cert %s: no SNI", name)
		}
		if ch := c.Challenge; ch != nil {
			switch {
			case ch.Type == ChallengeDNS01 && ch.Provider != "":
			case ch.Type == ChallengeHTTP01 && ch.Mode == ModeWebrootPush && strings.HasPrefix(ch.Webroot, "/"):
			case ch.Type == ChallengeHTTP01 && ch.Mode == ModeStandalone && ch.Address != "":
			default:
				t.Fatalf("cert %s: challenge %+v", name, ch)
			}
		}
		hosts, err := cfg.HostsFor(name)
		if err != nil {
			t.Fatalf("HostsFor(%s): %v", name, err)
		}
		seen := map[string]bool{}
		for _, h := range hosts {
			checkHost(t, h)
			if seen[h.Name] {
				t.Fatalf("HostsFor(%s): %s twice", name, h.Name)
			}
			seen[h.Name] = true
		}
		if len(c.Canary) > len(hosts) {
			t.Fatalf("cert %s: canary %q not all among hosts", name, c.Canary)
		}
		for i, cn := range c.Canary {
			if hosts[i].Name != cn {
				t.Fatalf("cert %s: host %d is %s, want canary %s", name, i, hosts[i].Name, cn)
			}
		}
	}
}

// FuzzParseHostList checks that ParseHostList never panics, that every
// host it returns can be dialled, and that errors name real lines.
func FuzzParseHostList(f *testing.F) {
	example, err := os.ReadFile("testdata/inventory/example.com")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	defaults := SSH{User: "certsync", Port: 22, Incoming: "/in", Command: "certnode"}
	f.Fuzz(func(t *testing.T, data []byte) {
		hosts, err := ParseHostList("list", data, defaults)
		if err != nil {
			if hosts != nil {
				t.Fatal("hosts returned with an error")
			}
			lines := strings.Count(string(data), "\n") + 1
			errs := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				errs = j.Unwrap()
			}
			for _, e := range errs {
				var ie *Error
				if !errors.As(e, &ie) || ie.File != "list" || ie.Line < 1 || ie.Line > lines {
					t.Fatalf("bad error %q", e)
				}
			}
			return
		}
		seen := map[string]bool{}
		for _, h := range hosts {
			checkHost(t, h)
			if seen[h.Name] {
				t.Fatalf("%s twice", h.Name)
			}
			seen[h.Name] = true
			if strings.ContainsAny(h.Name, " \t#@,") {
				t.Fatalf("bad name %q", h.Name)
			}
		}
	})
}
