package inventory

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestHostsForExample(t *testing.T) {
	cfg, err := Load("testdata/certpush.yaml")
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := cfg.HostsFor("example.com")
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		name, ssh, user string
		verify          []string
	}
	want := []row{
		// canary first
		{"beta-01", "beta-01.example.com:22", "certsync", []string{"beta-01.example.com:443"}},
		// hosts: [web, ws-01]; web expands sorted
		{"web-01", "10.0.0.11:22", "certsync", []string{"10.0.0.11:443", "10.0.0.11:8443"}},
		{"web-02", "10.0.0.12:22", "certsync", []string{"10.0.0.12:443"}},
		{"ws-01", "[2001:db8::21]:2222", "deploy", []string{"[2001:db8::21]:443"}},
		// then the host list, in file order, without repeats
		{"edge-01.example.com", "edge-01.example.com:22", "certsync", []string{"edge-01.example.com:443"}},
		{"edge-02.example.com:2022", "edge-02.example.com:2022", "root", []string{"edge-02.example.com:443"}},
		{"[2001:db8::31]:22", "[2001:db8::31]:22", "certsync", []string{"[2001:db8::31]:443"}},
		{"2001:db8::32", "[2001:db8::32]:22", "certsync", []string{"[2001:db8::32]:443"}},
	}
	var got []row
	for _, h := range hosts {
		got = append(got, row{h.Name, h.SSHAddress(), h.User, h.Verify})
		if h.Incoming == "" || h.Command == "" {
			t.Errorf("host %s not resolved: %+v", h.Name, h)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("HostsFor() =\n%+v\nwant\n%+v", got, want)
	}
	ws := hosts[3]
	if ws.Incoming != "/srv/certsync/live" || ws.Command != "sudo -n /usr/local/bin/certnode --config /etc/certnode/certnode.yaml" {
		t.Errorf("ws-01 overrides lost: %+v", ws)
	}

	// The result is a copy.
	hosts[1].Verify[0] = "changed:1"
	hosts[1].Groups[0] = "changed"
	again, _ := cfg.HostsFor("example.com")
	if again[1].Verify[0] != "10.0.0.11:443" || cfg.Hosts["web-01"].Groups[0] != "web" {
		t.Errorf("HostsFor() shares slices with the config")
	}

	// No verify_ports: hosts without endpoints stay without.
	hosts, err = cfg.HostsFor("internal")
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 2 || hosts[0].Name != "web-01" || hosts[1].Name != "web-02" || hosts[1].Verify != nil {
		t.Errorf("HostsFor(internal) = %+v", hosts)
	}
}

func TestHostsFor(t *testing.T) {
	dir := t.TempDir()
	list := "b-01\nops@c-01:2200\nlisted.example\n[::1]:2022\nlisted.example:2200\nops@a-02\n"
	if err := os.WriteFile(filepath.Join(dir, "list"), []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	const hosts = `ssh: {user: push, port: 2222}
hosts:
  a-02: {address: 10.0.1.2, groups: [a, all]}
  a-01: {address: 10.0.1.1, groups: [a, all], verify: ["10.0.1.1:4443"]}
  b-01: {address: 10.0.2.1, groups: [all], port: 22}
  c-01: {address: 10.0.3.1, user: admin, incoming: /custom}
  solo: {address: solo.example}
`
	testCases := []struct {
		desc  string
		certs string
		want  []string // name user@ssh-address verify...
	}{
		{
			desc:  "groups expand sorted, duplicates dropped",
			certs: "hosts: [all, a, solo, a-01]",
			want: []string{
				"a-01 push@10.0.1.1:2222 10.0.1.1:4443",
				"a-02 push@10.0.1.2:2222",
				"b-01 push@10.0.2.1:22",
				"solo push@solo.example:2222",
			},
		},
		{
			desc:  "host before its group",
			certs: "hosts: [b-01, all]",
			want: []string{
				"b-01 push@10.0.2.1:22",
				"a-01 push@10.0.1.1:2222 10.0.1.1:4443",
				"a-02 push@10.0.1.2:2222",
			},
		},
		{
			desc:  "verify_ports fill hosts without endpoints",
			certs: "hosts: [a, solo]\n    verify_ports: [443, 8443]",
			want: []string{
				"a-01 push@10.0.1.1:2222 10.0.1.1:4443",
				"a-02 push@10.0.1.2:2222 10.0.1.2:443 10.0.1.2:8443",
				"solo push@solo.example:2222 solo.example:443 solo.example:8443",
			},
		},
		{
			desc:  "host list merged with configured hosts",
			certs: "hosts: [solo, a-02]\n    hosts_file: list",
			want: []string{
				"solo push@solo.example:2222",
				"a-02 ops@10.0.1.2:2222", // the list's user wins; position kept
				"b-01 push@10.0.2.1:22",
				"c-01 ops@10.0.3.1:2200", // the list's user and port win
				"listed.example push@listed.example:2222",
				"[::1]:2022 push@[::1]:2022",
				"listed.example:2200 push@listed.example:2200",
			},
		},
		{
			desc:  "canary first, in canary order",
			certs: "hosts: [all, solo]\n    hosts_file: list\n    canary: [listed.example, solo, a-02]",
			want: []string{
				"listed.example push@listed.example:2222",
				"solo push@solo.example:2222",
				"a-02 ops@10.0.1.2:2222",
				"a-01 push@10.0.1.1:2222 10.0.1.1:4443",
				"b-01 push@10.0.2.1:22",
				"c-01 ops@10.0.3.1:2200",
				"[::1]:2022 push@[::1]:2022",
				"listed.example:2200 push@listed.example:2200",
			},
		},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			data := hosts + "certs:\n  x:\n    domains: [x.example]\n    " + tc.certs + "\n"
			cfg, err := Parse(filepath.Join(dir, "certpush.yaml"), []byte(data))
			if err != nil {
				t.Fatal(err)
			}
			hs, err := cfg.HostsFor("x")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, h := range hs {
				s := h.Name + " " + h.User + "@" + h.SSHAddress()
				for _, v := range h.Verify {
					s += " " + v
				}
				got = append(got, s)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("HostsFor() =\n%q\nwant\n%q", got, tc.want)
			}
			for _, h := range hs {
				if h.Name == "c-01" && h.Incoming != "/custom" {
					t.Errorf("c-01 lost its incoming: %+v", h)
				}
			}
		})
	}
}

func TestHostsForBuiltConfig(t *testing.T) {
	// A Config built in code gets the package defaults.
	cfg := &Config{
		Certs: map[string]*Cert{"x": {Name: "x", Domains: []string{"x.example"}, Hosts: []string{"h", "g"}, VerifyPorts: []int{443}}},
		Hosts: map[string]*Host{
			"h":  {Name: "h", Address: "127.0.0.1"},
			"g2": {Name: "g2", Address: "::1", Port: 2222, Groups: []string{"g"}},
			"g1": {Name: "g1", Address: "localhost", User: "me", Groups: []string{"g"}},
		},
	}
	hs, err := cfg.HostsFor("x")
	if err != nil {
		t.Fatal(err)
	}
	want := []Host{
		{Name: "h", Address: "127.0.0.1", Port: 22, User: "certsync", Verify: []string{"127.0.0.1:443"}, Incoming: "/certsync/live", Command: "certnode"},
		{Name: "g1", Address: "localhost", Port: 22, User: "me", Groups: []string{"g"}, Verify: []string{"localhost:443"}, Incoming: "/certsync/live", Command: "certnode"},
		{Name: "g2", Address: "::1", Port: 2222, User: "certsync", Groups: []string{"g"}, Verify: []string{"[::1]:443"}, Incoming: "/certsync/live", Command: "certnode"},
	}
	if !reflect.DeepEqual(hs, want) {
		t.Errorf("HostsFor() =\n%+v\nwant\n%+v", hs, want)
	}
	if got := cfg.Certs["x"].SNI(); got != "x.example" {
		t.Errorf("SNI() = %q", got)
	}
	if names := cfg.Names(); !reflect.DeepEqual(names, []string{"x"}) {
		t.Errorf("Names() = %q", names)
	}
}
