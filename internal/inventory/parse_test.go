package inventory

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// errorLines returns the messages of a joined error, one per problem,
// checking that each is an *Error.
func errorLines(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var lines []string
	for _, e := range errs {
		var ie *Error
		if !errors.As(e, &ie) {
			t.Errorf("error %q is not an *inventory.Error", e)
		}
		lines = append(lines, e.Error())
	}
	return lines
}

func TestLoadExample(t *testing.T) {
	cfg, err := Load("testdata/certpush.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Path, "testdata/certpush.yaml"; got != want {
		t.Errorf("Path = %q, want %q", got, want)
	}
	// Relative paths are resolved against the config's directory.
	if got, want := cfg.StateDir, filepath.Join("testdata", "state"); got != want {
		t.Errorf("StateDir = %q, want %q", got, want)
	}
	wantSSH := SSH{
		User:           "certsync",
		Port:           22,
		Identity:       filepath.Join("testdata", "keys", "id_ed25519"),
		KnownHosts:     "/etc/certpush/known_hosts",
		Parallel:       8,
		Timeout:        90 * time.Second,
		ConnectTimeout: 5 * time.Second,
		Incoming:       DefaultIncoming,
		Command:        DefaultCommand,
	}
	if !reflect.DeepEqual(cfg.SSH, wantSSH) {
		t.Errorf("SSH = %+v\nwant %+v", cfg.SSH, wantSSH)
	}
	wantACME := ACME{
		Directory:          "https://acme-staging-v02.api.letsencrypt.org/directory",
		Email:              "ops@example.com",
		CAFile:             filepath.Join("testdata", "pebble-ca.pem"),
		KeyType:            "ec256",
		DNSResolvers:       []string{"127.0.0.1:8053", "[::1]:53"},
		PropagationTimeout: 2 * time.Minute,
	}
	if !reflect.DeepEqual(cfg.ACME, wantACME) {
		t.Errorf("ACME = %+v\nwant %+v", cfg.ACME, wantACME)
	}
	if got, want := cfg.CertOrder, []string{"example.com", "shop.example.org", "internal"}; !reflect.DeepEqual(got, want) {
		t.Errorf("CertOrder = %q, want %q", got, want)
	}

	ex := cfg.Certs["example.com"]
	wantEx := &Cert{
		Name:        "example.com",
		Domains:     []string{"example.com", "*.example.com"},
		Hosts:       []string{"web", "ws-01"},
		HostsFile:   filepath.Join("testdata", "inventory", "example.com"),
		Install:     InstallNow,
		Canary:      []string{"beta-01"},
		VerifyPorts: []int{443},
		RenewBefore: 720 * time.Hour,
		Challenge:   &Challenge{Type: ChallengeDNS01, Provider: "route53", PropagationTimeout: 5 * time.Minute},
	}
	ex.listed = nil
	if !reflect.DeepEqual(ex, wantEx) {
		t.Errorf("cert example.com = %+v\nwant %+v", ex, wantEx)
	}
	if got, want := ex.SNI(), "example.com"; got != want {
		t.Errorf("SNI() = %q, want %q", got, want)
	}

	shop := cfg.Certs["shop.example.org"]
	wantShop := &Cert{
		Name:      "shop.example.org",
		Domains:   []string{"shop.example.org"},
		Hosts:     []string{"shop-01", "shop-02"},
		Install:   InstallCron,
		VerifySNI: "shop.example.org",
		KeyType:   "rsa2048",
		Challenge: &Challenge{Type: ChallengeHTTP01, Mode: ModeWebrootPush, Webroot: "/var/www/acme"},
	}
	if !reflect.DeepEqual(shop, wantShop) {
		t.Errorf("cert shop.example.org = %+v\nwant %+v", shop, wantShop)
	}
	if got, want := cfg.Certs["internal"].SNI(), "www.internal.example.net"; got != want {
		t.Errorf("internal SNI() = %q, want %q", got, want)
	}

	wantWS := &Host{
		Name:     "ws-01",
		Address:  "2001:db8::21",
		Port:     2222,
		User:     "deploy",
		Incoming: "/srv/certsync/live",
		Command:  "sudo -n /usr/local/bin/certnode --config /etc/certnode/certnode.yaml",
	}
	if got := cfg.Hosts["ws-01"]; !reflect.DeepEqual(got, wantWS) {
		t.Errorf("host ws-01 = %+v\nwant %+v", got, wantWS)
	}
	if got, want := cfg.Hosts["ws-01"].SSHAddress(), "[2001:db8::21]:2222"; got != want {
		t.Errorf("SSHAddress() = %q, want %q", got, want)
	}
	wantWeb := &Host{
		Name:     "web-01",
		Address:  "10.0.0.11",
		Port:     22,
		User:     "certsync",
		Groups:   []string{"web"},
		Verify:   []string{"10.0.0.11:443", "10.0.0.11:8443"},
		Incoming: DefaultIncoming,
		Command:  DefaultCommand,
	}
	if got := cfg.Hosts["web-01"]; !reflect.DeepEqual(got, wantWeb) {
		t.Errorf("host web-01 = %+v\nwant %+v", got, wantWeb)
	}
}

func TestParseDefaults(t *testing.T) {
	cfg, err := Parse("/etc/certpush/certpush.yaml", []byte("certs:\n  a.example:\n    domains: [a.example]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Path:     "/etc/certpush/certpush.yaml",
		StateDir: DefaultStateDir,
		SSH: SSH{
			User:           "certsync",
			Port:           22,
			KnownHosts:     "/var/lib/certpush/known_hosts",
			Parallel:       32,
			Timeout:        60 * time.Second,
			ConnectTimeout: 10 * time.Second,
			Incoming:       "/certsync/live",
			Command:        "certnode",
		},
		ACME: ACME{
			Directory: "https://acme-v02.api.letsencrypt.org/directory",
			KeyType:   "ec256",
		},
		Certs: map[string]*Cert{
			"a.example": {Name: "a.example", Domains: []string{"a.example"}, Install: InstallNow},
		},
		Hosts:     map[string]*Host{},
		CertOrder: []string{"a.example"},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Parse() = %+v\nwant %+v", cfg, want)
	}
	hosts, err := cfg.HostsFor("a.example")
	if err != nil || len(hosts) != 0 {
		t.Errorf("HostsFor() = %v, %v; want no hosts", hosts, err)
	}
}

func TestParseValid(t *testing.T) {
	testCases := []struct {
		desc  string
		yaml  string
		check func(t *testing.T, c *Config)
	}{
		{
			desc: "known_hosts follows state_dir",
			yaml: "state_dir: /srv/cp\ncerts: {a: {domains: [a.example]}}\n",
			check: func(t *testing.T, c *Config) {
				if c.SSH.KnownHosts != "/srv/cp/known_hosts" {
					t.Errorf("KnownHosts = %q", c.SSH.KnownHosts)
				}
			},
		},
		{
			desc: "domains lower-cased",
			yaml: "certs: {a: {domains: [Example.COM, '*.Example.com']}}\n",
			check: func(t *testing.T, c *Config) {
				if got := c.Certs["a"].Domains; !reflect.DeepEqual(got, []string{"example.com", "*.example.com"}) {
					t.Errorf("Domains = %q", got)
				}
			},
		},
		{
			desc: "http-01 standalone default address",
			yaml: "certs: {a: {domains: [a.example], challenge: {type: http-01, mode: standalone}}}\n",
			check: func(t *testing.T, c *Config) {
				want := &Challenge{Type: ChallengeHTTP01, Mode: ModeStandalone, Address: ":80"}
				if got := c.Certs["a"].Challenge; !reflect.DeepEqual(got, want) {
					t.Errorf("Challenge = %+v, want %+v", got, want)
				}
			},
		},
		{
			desc: "http-01 standalone address",
			yaml: "certs: {a: {domains: [a.example], challenge: {type: http-01, mode: standalone, address: '127.0.0.1:8402'}}}\n",
			check: func(t *testing.T, c *Config) {
				if got := c.Certs["a"].Challenge.Address; got != "127.0.0.1:8402" {
					t.Errorf("Address = %q", got)
				}
			},
		},
		{
			desc: "dns-01 exec with resolvers",
			yaml: "certs: {a: {domains: [a.example], challenge: {type: dns-01, provider: exec, resolvers: ['1.1.1.1:53']}}}\n",
			check: func(t *testing.T, c *Config) {
				want := &Challenge{Type: ChallengeDNS01, Provider: "exec", Resolvers: []string{"1.1.1.1:53"}}
				if got := c.Certs["a"].Challenge; !reflect.DeepEqual(got, want) {
					t.Errorf("Challenge = %+v, want %+v", got, want)
				}
			},
		},
		{
			desc: "eab and acme options",
			yaml: "acme: {eab: {kid: KID1, hmac_key: 'c2VjcmV0LWtleQ'}, key_type: rsa4096, preferred_chain: ISRG Root X1, disable_propagation_check: true}\ncerts: {a: {domains: [a.example]}}\n",
			check: func(t *testing.T, c *Config) {
				if c.ACME.EAB == nil || c.ACME.EAB.KID != "KID1" || c.ACME.EAB.HMACKey != "c2VjcmV0LWtleQ" {
					t.Errorf("EAB = %+v", c.ACME.EAB)
				}
				if c.ACME.KeyType != "rsa4096" || c.ACME.PreferredChain != "ISRG Root X1" || !c.ACME.DisablePropagationCheck {
					t.Errorf("ACME = %+v", c.ACME)
				}
			},
		},
		{
			desc: "yaml anchors and merge keys",
			yaml: `hosts:
  web-01: &base {address: 10.0.0.1, port: 2200, groups: [web]}
  web-02: {<<: *base, address: 10.0.0.2}
certs: {a: {domains: [a.example], hosts: [web]}}
`,
			check: func(t *testing.T, c *Config) {
				h := c.Hosts["web-02"]
				if h.Address != "10.0.0.2" || h.Port != 2200 || !reflect.DeepEqual(h.Groups, []string{"web"}) {
					t.Errorf("web-02 = %+v", h)
				}
			},
		},
		{
			desc: "bracketed IPv6 address",
			yaml: "hosts: {h: {address: '[::1]'}}\ncerts: {a: {domains: [a.example], hosts: [h]}}\n",
			check: func(t *testing.T, c *Config) {
				if got := c.Hosts["h"].SSHAddress(); got != "[::1]:22" {
					t.Errorf("SSHAddress() = %q", got)
				}
			},
		},
		{
			desc: "renew_before zero and null fields",
			yaml: "ssh:\nacme:\nhosts:\ncerts: {a: {domains: [a.example], renew_before: 0, canary: , hosts: ~}}\n",
			check: func(t *testing.T, c *Config) {
				if c.Certs["a"].RenewBefore != 0 || c.SSH.Port != 22 {
					t.Errorf("cert = %+v, ssh = %+v", c.Certs["a"], c.SSH)
				}
			},
		},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			cfg, err := Parse("certpush.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatalf("Parse() error:\n%v", err)
			}
			tc.check(t, cfg)
		})
	}
}

func TestParseErrors(t *testing.T) {
	const head = "certs:\n  a.example:\n    domains: [a.example]\n"
	testCases := []struct {
		desc string
		yaml string
		want []string
	}{
		{
			desc: "empty file",
			yaml: "",
			want: []string{"certpush.yaml: no certificates configured"},
		},
		{
			desc: "comments only",
			yaml: "# nothing\n",
			want: []string{"certpush.yaml: no certificates configured"},
		},
		{
			desc: "empty certs",
			yaml: "state_dir: /x\ncerts: {}\n",
			want: []string{"certpush.yaml:2: no certificates configured"},
		},
		{
			desc: "yaml syntax",
			yaml: "certs:\n  a: [\n",
			want: []string{"certpush.yaml:2: did not find expected node content"},
		},
		{
			desc: "top level not a mapping",
			yaml: "- a\n- b\n",
			want: []string{"certpush.yaml:1: top level: want a mapping, got a list", "certpush.yaml: no certificates configured"},
		},
		{
			desc: "two documents",
			yaml: head + "---\nstate_dir: /x\n",
			want: []string{"certpush.yaml:4: more than one YAML document; put everything in one"},
		},
		{
			desc: "unknown keys at every level",
			yaml: `statedir: /x
ssh: {usr: a}
acme: {eab: {kid: a, hmac_key: YQ, x: 1}, mail: a@b}
certs:
  example.com:
    domains: [example.com]
    hostz: [web]
    challenge: {type: dns-01, provider: ovh, zone: x}
hosts:
  h: {address: h.example, verfy: []}
`,
			want: []string{
				`certpush.yaml:1: unknown key "statedir" (did you mean "state_dir"?)`,
				`certpush.yaml:2: unknown key "usr" in ssh (did you mean "user"?)`,
				`certpush.yaml:3: unknown key "x" in acme.eab`,
				`certpush.yaml:3: unknown key "mail" in acme (did you mean "email"?)`,
				`certpush.yaml:7: unknown key "hostz" in certs.example.com (did you mean "hosts"?)`,
				`certpush.yaml:8: unknown key "zone" in certs.example.com.challenge (did you mean "mode"?)`,
				`certpush.yaml:10: unknown key "verfy" in hosts.h (did you mean "verify"?)`,
			},
		},
		{
			desc: "duplicate key",
			yaml: head + "    domains: [b.example]\n",
			want: []string{`certpush.yaml:4: duplicate key "domains" in certs.a.example`},
		},
		{
			desc: "wrong types",
			yaml: head + `ssh:
  user: [a]
  port: "22"
  parallel: 2.5
  timeout: [1s]
acme:
  disable_propagation_check: "yes"
  dns_resolvers: 127.0.0.1:53
hosts: [a]
`,
			want: []string{
				"certpush.yaml:5: ssh.user: want a single value, got a list",
				`certpush.yaml:6: ssh.port: want an integer, got "22"`,
				`certpush.yaml:7: ssh.parallel: want an integer, got "2.5"`,
				"certpush.yaml:8: ssh.timeout: want a single value, got a list",
				`certpush.yaml:10: acme.disable_propagation_check: want true or false, got "yes"`,
				`certpush.yaml:11: acme.dns_resolvers: want a list, got "127.0.0.1:53"`,
				"certpush.yaml:12: hosts: want a mapping, got a list",
			},
		},
		{
			desc: "bad ssh values",
			yaml: head + `ssh:
  user: "a b"
  port: 70000
  parallel: 0
  timeout: 60
  connect_timeout: -1s
  incoming: ""
  identity: ""
`,
			want: []string{
				`certpush.yaml:5: ssh.user: bad user "a b": holds ' '`,
				"certpush.yaml:6: ssh.port: 70000 out of range 1..65535",
				"certpush.yaml:7: ssh.parallel: must be at least 1, got 0",
				`certpush.yaml:8: ssh.timeout: want a positive duration such as 90s, 15m or 720h, got "60"`,
				"certpush.yaml:9: ssh.connect_timeout: want a positive duration such as 90s, 15m or 720h, got \"-1s\"",
				"certpush.yaml:10: ssh.incoming: must not be empty",
				"certpush.yaml:11: ssh.identity: must not be empty",
			},
		},
		{
			desc: "bad acme values",
			yaml: head + `acme:
  directory: acme.example/dir
  email: ops
  key_type: ed25519
  eab: {kid: k, hmac_key: "not base64!"}
  dns_resolvers: ["127.0.0.1", "[::1]:0"]
  propagation_timeout: 2 minutes
`,
			want: []string{
				`certpush.yaml:5: acme.directory: bad URL "acme.example/dir": want https://host/path`,
				`certpush.yaml:6: acme.email: bad address "ops"`,
				`certpush.yaml:7: acme.key_type: unknown key type "ed25519" (use ec256, ec384, rsa2048, rsa4096)`,
				"certpush.yaml:8: acme.eab.hmac_key: not base64url",
				"certpush.yaml:8: acme.eab: kid and hmac_key are both required",
				`certpush.yaml:9: acme.dns_resolvers: bad address "127.0.0.1": want host:port ([::1]:443 for IPv6)`,
				`certpush.yaml:9: acme.dns_resolvers: bad address "[::1]:0": port 0 out of range 1..65535`,
				`certpush.yaml:10: acme.propagation_timeout: want a positive duration such as 90s, 15m or 720h, got "2 minutes"`,
			},
		},
		{
			desc: "bad cert names",
			yaml: "certs:\n  ../etc:\n    domains: [a.example]\n  'a b':\n    domains: [a.example]\n",
			want: []string{
				`certpush.yaml:2: certs: certificate name "../etc" must not start with '.'`,
				`certpush.yaml:4: certs: certificate name "a b" holds ' ': only letters, digits, '.', '-' and '_' are allowed`,
			},
		},
		{
			desc: "bad cert values",
			yaml: `certs:
  a.example:
    domains: ["a..example", "*.*.example", "ok.example", "OK.example", "-x.example"]
    install: later
    verify_sni: "*.a.example"
    verify_ports: [443, 0, https]
    renew_before: soon
    key_type: rsa1024
  b.example:
    domains: []
  c.example:
    hosts: []
`,
			want: []string{
				`certpush.yaml:3: certs.a.example.domains: bad domain "a..example": empty label`,
				`certpush.yaml:3: certs.a.example.domains: bad domain "*.*.example": a wildcard is only allowed as the whole first label (*.example.com)`,
				`certpush.yaml:3: certs.a.example.domains: duplicate domain "ok.example"`,
				`certpush.yaml:3: certs.a.example.domains: bad domain "-x.example": label "-x" starts or ends with '-'`,
				`certpush.yaml:4: certs.a.example.install: unknown install mode "later" (use now or cron)`,
				`certpush.yaml:5: certs.a.example.verify_sni: bad server name "*.a.example": label "*" holds '*'`,
				"certpush.yaml:6: certs.a.example.verify_ports[1]: 0 out of range 1..65535",
				`certpush.yaml:6: certs.a.example.verify_ports[2]: want an integer, got "https"`,
				`certpush.yaml:7: certs.a.example.renew_before: want 0 or a positive duration such as 90s, 15m or 720h, got "soon"`,
				`certpush.yaml:8: certs.a.example.key_type: unknown key type "rsa1024" (use ec256, ec384, rsa2048, rsa4096)`,
				"certpush.yaml:10: certs.b.example.domains: must list at least one domain",
				"certpush.yaml:11: certs.c.example: domains is required: list the names the certificate covers",
			},
		},
		{
			desc: "unknown host references",
			yaml: `certs:
  a.example:
    domains: [a.example]
    hosts: [web, ws-99]
    canary: [web-02, web, nope]
hosts:
  web-01: {address: 10.0.0.1, groups: [web]}
  web-02: {address: 10.0.0.2}
`,
			want: []string{
				`certpush.yaml:4: certs.a.example.hosts: unknown host or group "ws-99"`,
				`certpush.yaml:5: certs.a.example.canary: host "web-02" is not among the hosts of a.example`,
				`certpush.yaml:5: certs.a.example.canary: "web" is a group; list canary hosts by name`,
				`certpush.yaml:5: certs.a.example.canary: unknown host "nope"`,
			},
		},
		{
			desc: "bad hosts",
			yaml: head + `hosts:
  web-01:
    port: 0
    user: "a@b"
    groups: [web-02, "a,b"]
    verify: ["10.0.0.1", "h.example:https", "a b:443"]
  web-02:
    address: "10.0.0.1:22"
  web-03:
    address: "[10.0.0.3]"
  "bad name":
    address: x.example
`,
			want: []string{
				"certpush.yaml:5: hosts.web-01: address is required",
				"certpush.yaml:6: hosts.web-01.port: 0 out of range 1..65535",
				`certpush.yaml:7: hosts.web-01.user: bad user "a@b": holds '@'`,
				`certpush.yaml:8: hosts.web-01.groups: bad group name: name "a,b" holds ',': use printable ASCII without spaces, ',', '@' or '#'`,
				`certpush.yaml:8: group "web-02" has the name of a host; rename one of them`,
				`certpush.yaml:9: hosts.web-01.verify: bad address "10.0.0.1": want host:port ([::1]:443 for IPv6)`,
				`certpush.yaml:9: hosts.web-01.verify: bad address "h.example:https": bad port "https"`,
				`certpush.yaml:9: hosts.web-01.verify: bad address "a b:443": label "a b" holds ' '`,
				`certpush.yaml:11: hosts.web-02.address: bad address "10.0.0.1:22": not an IP address, and a host name has no ':' (give the port separately)`,
				`certpush.yaml:13: hosts.web-03.address: bad address "[10.0.0.3]": brackets must hold an IPv6 address`,
				`certpush.yaml:14: hosts: bad host name: name "bad name" holds ' ': use printable ASCII without spaces, ',', '@' or '#'`,
			},
		},
		{
			desc: "bad challenges",
			yaml: `certs:
  a:
    domains: [a.example]
    challenge: {provider: route53}
  b:
    domains: [b.example]
    challenge: {type: tls-alpn-01}
  c:
    domains: [c.example]
    challenge: {type: dns-01, webroot: /var/www}
  d:
    domains: [d.example]
    challenge: {type: http-01, provider: route53, resolvers: ["1.1.1.1:53"]}
  e:
    domains: [e.example]
    challenge: {type: http-01, mode: standalone, address: "nowhere", webroot: /w}
  f:
    domains: [f.example]
    challenge: {type: http-01, mode: push, webroot: www}
  g:
    domains: [g.example]
    challenge: {type: dns-01, provider: "Route 53"}
`,
			want: []string{
				"certpush.yaml:4: certs.a.challenge: type is required (dns-01, http-01 or dns-persist-01)",
				`certpush.yaml:7: certs.b.challenge.type: unknown challenge type "tls-alpn-01" (use dns-01, http-01, dns-persist-01)`,
				"certpush.yaml:10: certs.c.challenge: provider is required for dns-01 (a lego DNS provider code such as route53, or exec)",
				"certpush.yaml:10: certs.c.challenge.webroot: only applies to http-01",
				"certpush.yaml:13: certs.d.challenge.provider: only applies to dns-01",
				"certpush.yaml:13: certs.d.challenge.resolvers: only applies to dns-01",
				"certpush.yaml:13: certs.d.challenge: webroot is required for http-01 mode webroot-push (the directory served at /.well-known/acme-challenge/ is <webroot>/.well-known/acme-challenge/)",
				`certpush.yaml:16: certs.e.challenge.address: bad address "nowhere": want host:port ([::1]:443 for IPv6)`,
				"certpush.yaml:16: certs.e.challenge.webroot: only applies to mode webroot-push",
				`certpush.yaml:19: certs.f.challenge.mode: unknown mode "push" (use webroot-push or standalone)`,
				`certpush.yaml:19: certs.f.challenge.webroot: "www" must be an absolute path (a directory on every host)`,
				`certpush.yaml:22: certs.g.challenge.provider: bad provider name "Route 53" (a lego DNS provider code such as route53, or exec)`,
			},
		},
		{
			desc: "missing hosts_file",
			yaml: head + "    hosts_file: nowhere/list\n    canary: [x]\n",
			want: []string{
				"certpush.yaml:4: certs.a.example.hosts_file: read host list: stat nowhere/list: no such file or directory",
			},
		},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			cfg, err := Parse("certpush.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("Parse() = %+v, want errors", cfg)
			}
			if cfg != nil {
				t.Errorf("Parse() returned a config with an error")
			}
			got := errorLines(t, err)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestParseHostsFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("lists/bad", "ok.example\nweb\nuser@h.example:x\n\nok.example\n")
	cfgPath := filepath.Join(dir, "certpush.yaml")
	data := `certs:
  a:
    domains: [a.example]
    hosts_file: lists/bad
hosts:
  web-01: {address: 10.0.0.1, groups: [web]}
`
	_, err := Parse(cfgPath, []byte(data))
	list := filepath.Join(dir, "lists", "bad")
	want := []string{
		list + `:2: "web" is a group name, not a host`,
		list + `:3: bad port "x"`,
		list + `:5: duplicate entry "ok.example" (first on line 1)`,
	}
	if got := errorLines(t, err); !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Config errors come first, then the host list's, each in line order.
	data = "certs:\n  a:\n    domains: [a.example]\n    hosts_file: lists/bad\n    install: sometimes\n"
	_, err = Parse(cfgPath, []byte(data))
	got := errorLines(t, err)
	if len(got) != 3 || !strings.HasPrefix(got[0], cfgPath+":5: ") || !strings.HasPrefix(got[1], list+":3: ") {
		t.Errorf("errors:\n%s", strings.Join(got, "\n"))
	}

	// Two entries naming the same configured host.
	write("lists/twice", "web-01\nweb-01:2222\n")
	data = "certs:\n  a:\n    domains: [a.example]\n    hosts_file: lists/twice\nhosts:\n  web-01: {address: 10.0.0.1}\n"
	_, err = Parse(cfgPath, []byte(data))
	if got, want := errorLines(t, err), []string{filepath.Join(dir, "lists", "twice") + `:2: host "web-01" already listed on line 1`}; !reflect.DeepEqual(got, want) {
		t.Errorf("errors: %q, want %q", got, want)
	}

	// A directory, or anything else but a regular file, is refused.
	write("lists/dir/x", "")
	data = "certs:\n  a:\n    domains: [a.example]\n    hosts_file: " + filepath.Join(dir, "lists/dir") + "\n"
	_, err = Parse(cfgPath, []byte(data))
	if got := errorLines(t, err); len(got) != 1 || !strings.Contains(got[0], "is not a regular file") {
		t.Errorf("errors: %q", got)
	}

	// A host list over the size limit is refused, naming the file.
	write("lists/big", strings.Repeat("#", MaxFileSize+1))
	data = "certs:\n  a:\n    domains: [a.example]\n    hosts_file: lists/big\n"
	_, err = Parse(cfgPath, []byte(data))
	want = []string{cfgPath + ":4: certs.a.hosts_file: read host list: " + filepath.Join(dir, "lists", "big") + " is larger than the limit of 4 MiB"}
	if got := errorLines(t, err); !reflect.DeepEqual(got, want) {
		t.Errorf("errors: %q, want %q", got, want)
	}
}

func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc", "inv"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "inv", "list"), []byte("n1.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "etc", "certpush.yaml")
	data := `state_dir: ../var/lib
ssh: {identity: id_ed25519, known_hosts: /abs/known_hosts}
acme: {ca_file: ./ca/roots.pem}
certs:
  a:
    domains: [a.example]
    hosts_file: inv/list
`
	if err := os.WriteFile(cfgPath, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ desc, got, want string }{
		{"state_dir", cfg.StateDir, filepath.Join(dir, "var", "lib")},
		{"identity", cfg.SSH.Identity, filepath.Join(dir, "etc", "id_ed25519")},
		{"known_hosts", cfg.SSH.KnownHosts, "/abs/known_hosts"},
		{"ca_file", cfg.ACME.CAFile, filepath.Join(dir, "etc", "ca", "roots.pem")},
		{"hosts_file", cfg.Certs["a"].HostsFile, filepath.Join(dir, "etc", "inv", "list")},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.desc, c.got, c.want)
		}
	}
	hosts, err := cfg.HostsFor("a")
	if err != nil || len(hosts) != 1 || hosts[0].Name != "n1.example" {
		t.Errorf("HostsFor() = %+v, %v", hosts, err)
	}

	// known_hosts defaults under the resolved state_dir.
	cfg, err = Parse(cfgPath, []byte("state_dir: state\ncerts: {a: {domains: [a.example]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "etc", "state", "known_hosts"); cfg.SSH.KnownHosts != want {
		t.Errorf("KnownHosts = %q, want %q", cfg.SSH.KnownHosts, want)
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load() error = %v, want fs.ErrNotExist", err)
	}
}

func TestCert(t *testing.T) {
	cfg, err := Load("testdata/certpush.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := cfg.Cert("shop.example.org")
	if err != nil || c.Name != "shop.example.org" {
		t.Errorf("Cert() = %v, %v", c, err)
	}
	_, err = cfg.Cert("nope")
	if !errors.Is(err, ErrUnknownCert) {
		t.Errorf("Cert() error = %v, want ErrUnknownCert", err)
	}
	if want := `unknown certificate "nope" (configured: example.com, shop.example.org, internal)`; err == nil || err.Error() != want {
		t.Errorf("Cert() error = %q, want %q", err, want)
	}
	if _, err := cfg.HostsFor("nope"); !errors.Is(err, ErrUnknownCert) {
		t.Errorf("HostsFor() error = %v, want ErrUnknownCert", err)
	}
}

func TestHostInstallMode(t *testing.T) {
	cfg, err := Parse("/etc/certpush/certpush.yaml", []byte(`hosts:
  web1: {address: 10.0.0.1}
  sftp1: {address: 10.0.0.2, install: cron}
certs:
  a.example:
    domains: [a.example]
    hosts: [web1, sftp1]
`))
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := cfg.HostsFor("a.example")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, h := range hosts {
		got[h.Name] = h.Install
	}
	if got["web1"] != "" || got["sftp1"] != InstallCron {
		t.Errorf("install modes %v, want web1 the certificate's and sftp1 cron", got)
	}
	_, err = Parse("/etc/certpush/certpush.yaml", []byte("hosts:\n  web1: {address: 10.0.0.1, install: later}\ncerts: {}\n"))
	if err == nil || !strings.Contains(err.Error(), `certpush.yaml:2: hosts.web1.install: unknown install mode "later" (use now or cron)`) {
		t.Errorf("bad host install mode: %v", err)
	}
}
