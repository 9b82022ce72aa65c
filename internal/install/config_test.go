package install

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join("testdata", "certnode.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Root != "/etc/certnode" || cfg.Incoming != "/certsync/live" || cfg.Keep != 4 || cfg.Timeout != 30*time.Second {
		t.Errorf("top level: %+v", cfg)
	}
	if cfg.Lock != "/etc/certnode/.lock" {
		t.Errorf("lock %q", cfg.Lock)
	}
	if len(cfg.TrustedKeys) != 1 {
		t.Errorf("trusted keys %d", len(cfg.TrustedKeys))
	}
	if got := cfg.Names(); !slices.Equal(got, []string{"api.example.com", "example.com"}) {
		t.Errorf("names %q", got)
	}
	ex := cfg.Certs["example.com"]
	if !slices.Equal(ex.Domains, []string{"example.com", "*.example.com"}) ||
		ex.Owner != "root" || ex.Group != "0" || ex.KeyMode != 0o640 || ex.CertMode != 0o644 ||
		!slices.Equal(ex.Test, []string{"nginx", "-t"}) || !slices.Equal(ex.Reload, []string{"systemctl", "reload", "nginx"}) ||
		!slices.Equal(ex.Verify, []string{"127.0.0.1:443", "[::1]:443"}) || ex.VerifyTimeout != 5*time.Second || ex.VerifySNI != "" {
		t.Errorf("example.com: %+v", ex)
	}
	api := cfg.Certs["api.example.com"]
	if api.Domains != nil || api.Test != nil || api.Verify != nil || api.KeyMode != 0o600 ||
		!slices.Equal(api.Reload, []string{"systemctl", "reload", "haproxy"}) || api.VerifySNI != "api.example.com" || api.Owner != "root" {
		t.Errorf("api.example.com: %+v", api)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	cfg, err := ParseConfig("/etc/certnode/certnode.yaml", []byte("allow_unsigned: true\ncerts:\n  example.com:\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Certs["example.com"]
	if cfg.Root != DefaultRoot || cfg.Incoming != DefaultIncoming || cfg.Keep != DefaultKeep || cfg.Timeout != DefaultTimeout ||
		cfg.TrustedKeys != nil || !cfg.AllowUnsigned || c.KeyMode != 0o600 || c.CertMode != 0o644 || c.Test != nil || c.Reload != nil ||
		c.VerifyTimeout != DefaultVerifyTimeout || c.Owner != "" {
		t.Errorf("defaults: %+v %+v", cfg, c)
	}
	// Relative paths are resolved against the file's directory.
	cfg, err = ParseConfig("/srv/node/certnode.yaml", []byte("root: state\nincoming: in\nlock: run/lock\nallow_unsigned: true\ncerts: {x: {}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Root != "/srv/node/state" || cfg.Incoming != "/srv/node/in" || cfg.Lock != "/srv/node/run/lock" {
		t.Errorf("paths %q %q %q", cfg.Root, cfg.Incoming, cfg.Lock)
	}
}

func TestParseConfigErrors(t *testing.T) {
	testCases := []struct {
		desc string
		yaml string
		want []string // each must appear in the error
	}{
		{
			desc: "unknown key with a suggestion",
			yaml: "certs:\n  example.com:\n    domains: [example.com]\n    relaod: [x]\n",
			want: []string{`certnode.yaml:4: unknown key "relaod" in certs.example.com (did you mean "reload"?)`},
		},
		{
			desc: "unknown top-level key",
			yaml: "rooot: /x\ncerts: {a: {}}\n",
			want: []string{`certnode.yaml:1: unknown key "rooot" (did you mean "root"?)`},
		},
		{
			desc: "keep too small",
			yaml: "keep: 1\ncerts: {a: {}}\n",
			want: []string{"certnode.yaml:1: keep: 1, want 2 or more"},
		},
		{
			desc: "keep not a number",
			yaml: "keep: three\ncerts: {a: {}}\n",
			want: []string{`certnode.yaml:1: keep: want an integer, got "three"`},
		},
		{
			desc: "world-readable key",
			yaml: "defaults:\n  key_mode: \"0644\"\ncerts: {a: {}}\n",
			want: []string{"certnode.yaml:2: defaults.key_mode: 0644 lets every user"},
		},
		{
			desc: "mode not octal",
			yaml: "certs:\n  a:\n    cert_mode: \"0x1ff\"\n",
			want: []string{"certnode.yaml:3: certs.a.cert_mode: want an octal file mode"},
		},
		{
			desc: "command as a string",
			yaml: "defaults:\n  reload: systemctl reload nginx\ncerts: {a: {}}\n",
			want: []string{"certnode.yaml:2: defaults.reload: want the command as a list of arguments"},
		},
		{
			desc: "bad endpoint",
			yaml: "certs:\n  a:\n    verify: [\"localhost\"]\n",
			want: []string{`certnode.yaml:3: certs.a.verify: bad address "localhost": want host:port ([::1]:443 for IPv6)`},
		},
		{
			desc: "bad duration",
			yaml: "timeout: 10\ncerts: {a: {}}\n",
			want: []string{"certnode.yaml:1: timeout: want a positive duration"},
		},
		{
			desc: "no trusted key",
			yaml: "certs: {a: {}}\n",
			want: []string{"certnode.yaml:1: trusted_keys: no signing key is trusted", "set allow_unsigned: true"},
		},
		{
			desc: "empty trusted keys",
			yaml: "trusted_keys: []\ncerts: {a: {}}\n",
			want: []string{"certnode.yaml:1: trusted_keys: no signing key is trusted"},
		},
		{
			desc: "allow_unsigned with trusted keys",
			yaml: "trusted_keys: [\"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"]\nallow_unsigned: true\ncerts: {a: {}}\n",
			want: []string{"certnode.yaml:2: allow_unsigned: true together with trusted_keys"},
		},
		{
			desc: "bad trusted key",
			yaml: "trusted_keys: [nope]\ncerts: {a: {}}\n",
			want: []string{"certnode.yaml:1: trusted_keys:"},
		},
		{
			desc: "bad certificate name",
			yaml: "certs:\n  ../etc: {}\n",
			want: []string{"certnode.yaml:2: certs:"},
		},
		{
			desc: "no certificates",
			yaml: "root: /etc/certnode\n",
			want: []string{"certs: no certificates configured"},
		},
		{
			desc: "incoming inside root",
			yaml: "root: /etc/certnode\nincoming: /etc/certnode/in\ncerts: {a: {}}\n",
			want: []string{"certnode.yaml:2: root /etc/certnode and incoming /etc/certnode/in must not be inside one another"},
		},
		{
			desc: "domains not names",
			yaml: "certs:\n  a:\n    domains: [\"exa mple.com\"]\n",
			want: []string{`certnode.yaml:3: certs.a.domains: bad domain "exa mple.com": label "exa mple" holds ' '`},
		},
		{
			desc: "bad server name",
			yaml: "certs:\n  a:\n    verify_sni: \"a b\"\n",
			want: []string{`certnode.yaml:3: certs.a.verify_sni: bad server name "a b": label "a b" holds ' '`},
		},
		{
			desc: "duplicate key",
			yaml: "keep: 3\nkeep: 4\ncerts: {a: {}}\n",
			want: []string{`certnode.yaml:2: duplicate key "keep"`},
		},
		{
			desc: "bad owner",
			yaml: "defaults:\n  owner: \"a b\"\ncerts: {a: {}}\n",
			want: []string{`certnode.yaml:2: defaults.owner: "a b" is not a user`},
		},
		{
			desc: "yaml syntax",
			yaml: "certs:\n  a: [\n",
			want: []string{"certnode.yaml:"},
		},
		{
			desc: "several problems, in line order",
			yaml: "keep: 0\ntimeout: x\ncerts: {a: {bogus: 1}}\n",
			want: []string{"certnode.yaml:1: keep", "certnode.yaml:2: timeout", `certnode.yaml:3: unknown key "bogus"`},
		},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := ParseConfig("certnode.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("error %T is not a *ConfigError", err)
			}
			msg := err.Error()
			last := -1
			for _, w := range tc.want {
				i := strings.Index(msg, w)
				if i < 0 {
					t.Errorf("error %q does not contain %q", msg, w)
				} else if i < last {
					t.Errorf("error %q: %q out of order", msg, w)
				}
				last = i
			}
		})
	}
}

func TestLoadConfigTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "certnode.yaml")
	data := []byte("certs: {a: {}}\n" + strings.Repeat("#", MaxConfigSize))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	if want := "read config: " + path + " is larger than the limit of 1 MiB"; err == nil || err.Error() != want {
		t.Errorf("LoadConfig() error = %v, want %q", err, want)
	}
}

func TestLoadConfigMissing(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "none.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error %v", err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("certs:\n  example.com: {}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig("certnode.yaml", data)
		if err != nil {
			if cfg != nil {
				t.Fatal("config and error")
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not a *ConfigError: %v", err, err)
			}
			return
		}
		if len(cfg.Certs) == 0 || cfg.Keep < 2 || cfg.Timeout <= 0 || cfg.Lock == "" {
			t.Fatalf("accepted an invalid config: %+v", cfg)
		}
		for name, c := range cfg.Certs {
			if c.Name != name || c.KeyMode&0o007 != 0 || c.KeyMode > 0o777 || c.CertMode > 0o777 || c.VerifyTimeout <= 0 {
				t.Fatalf("accepted an invalid cert: %+v", c)
			}
			for _, a := range [][]string{c.Test, c.Reload} {
				if a != nil && len(a) == 0 {
					t.Fatalf("empty argv kept: %+v", c)
				}
			}
		}
	})
}
