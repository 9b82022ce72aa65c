package testfleet

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// certnodeConfig is the certnode.yaml the fleet writes for each host.
type certnodeConfig struct {
	Root        string                  `yaml:"root"`
	Incoming    string                  `yaml:"incoming"`
	TrustedKeys []string                `yaml:"trusted_keys"`
	Roots       string                  `yaml:"roots,omitempty"`
	Keep        int                     `yaml:"keep"`
	Defaults    certnodeDefaults        `yaml:"defaults"`
	Certs       map[string]certnodeCert `yaml:"certs"`
}

type certnodeDefaults struct {
	Test   []string `yaml:"test"`
	Reload []string `yaml:"reload"`
	Verify []string `yaml:"verify"`
}

type certnodeCert struct {
	Domains []string `yaml:"domains"`
}

// SetTrustedKeys rewrites the host's certnode.yaml to trust exactly keys
// (base64 Ed25519, as in signing.pub), as an operator does during a
// signing key rotation.
func (h *Host) SetTrustedKeys(keys ...string) error {
	if len(keys) == 0 {
		return errors.New("SetTrustedKeys: no key")
	}
	return h.writeCertnodeConfig(keys...)
}

func (h *Host) writeCertnodeConfig(trustedKeys ...string) error {
	defaults := certnodeDefaults{
		Test:   h.NginxTest,
		Reload: h.NginxReload,
		Verify: []string{h.TLSAddr()},
	}
	if h.fleet.NoNginx {
		defaults = certnodeDefaults{Test: []string{}, Reload: []string{"true"}, Verify: []string{}}
	}
	c := certnodeConfig{
		Root:        h.Root,
		Incoming:    h.Incoming,
		TrustedKeys: []string{},
		Roots:       h.fleet.Roots,
		Keep:        3,
		Defaults:    defaults,
		Certs:       map[string]certnodeCert{h.fleet.CertName: {Domains: h.fleet.Domains}},
	}
	for _, k := range trustedKeys {
		if k != "" {
			c.TrustedKeys = append(c.TrustedKeys, k)
		}
	}
	data, err := marshalYAML(c)
	if err != nil {
		return fmt.Errorf("certnode config: %w", err)
	}
	if err := os.WriteFile(h.CertnodeConfig, data, 0o644); err != nil {
		return fmt.Errorf("certnode config: %w", err)
	}
	return nil
}

// InventoryOptions shape the management config WriteInventory writes.
type InventoryOptions struct {
	StateDir string        // required
	Install  string        // "now" (default) or "cron"
	Parallel int           // 0 = 8
	Timeout  time.Duration // 0 = 60s
	// Hosts limits the certificate to these hosts; nil = every host. All
	// hosts are listed under hosts: either way.
	Hosts []string
	// Cert holds more keys for the certificate's entry, e.g. "challenge"
	// or "canary".
	Cert map[string]any
	// Extra is YAML appended at the top level, e.g. an acme: section.
	Extra string
}

type inventory struct {
	StateDir string                   `yaml:"state_dir"`
	Roots    string                   `yaml:"roots,omitempty"`
	SSH      inventorySSH             `yaml:"ssh"`
	Certs    map[string]inventoryCert `yaml:"certs"`
	Hosts    map[string]inventoryHost `yaml:"hosts"`
}

type inventorySSH struct {
	User       string `yaml:"user"`
	Identity   string `yaml:"identity"`
	KnownHosts string `yaml:"known_hosts"`
	Parallel   int    `yaml:"parallel"`
	Timeout    string `yaml:"timeout"`
}

type inventoryCert struct {
	Domains []string       `yaml:"domains"`
	Hosts   []string       `yaml:"hosts"`
	Install string         `yaml:"install"`
	Extra   map[string]any `yaml:",inline"`
}

type inventoryHost struct {
	Address  string   `yaml:"address"`
	Port     int      `yaml:"port"`
	Incoming string   `yaml:"incoming"`
	Command  string   `yaml:"command,omitempty"`
	Verify   []string `yaml:"verify"`
	Webroot  string   `yaml:"webroot,omitempty"`
}

// WriteInventory writes a certpush management config for this fleet to
// path (mode 0644).
func (f *Fleet) WriteInventory(path string, opts InventoryOptions) error {
	if opts.StateDir == "" {
		return errors.New("write inventory: no state directory")
	}
	if opts.Install == "" {
		opts.Install = "now"
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 8
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	certHosts := opts.Hosts
	if certHosts == nil {
		for _, h := range f.Hosts {
			certHosts = append(certHosts, h.Name)
		}
	}
	inv := inventory{
		StateDir: opts.StateDir,
		Roots:    f.Roots,
		SSH: inventorySSH{
			User:       f.User,
			Identity:   f.Identity,
			KnownHosts: f.KnownHosts,
			Parallel:   opts.Parallel,
			Timeout:    durationString(opts.Timeout),
		},
		Certs: map[string]inventoryCert{f.CertName: {
			Domains: f.Domains,
			Hosts:   certHosts,
			Install: opts.Install,
			Extra:   opts.Cert,
		}},
		Hosts: map[string]inventoryHost{},
	}
	for _, h := range f.Hosts {
		verify := []string{h.TLSAddr()}
		if f.NoNginx {
			verify = []string{}
		}
		inv.Hosts[h.Name] = inventoryHost{
			Address:  "127.0.0.1",
			Port:     h.SSHPort,
			Incoming: h.Incoming,
			Command:  h.Command,
			Verify:   verify,
			Webroot:  h.Webroot,
		}
	}
	data, err := marshalYAML(inv)
	if err != nil {
		return fmt.Errorf("write inventory: %w", err)
	}
	if opts.Extra != "" {
		data = append(data, opts.Extra...)
		if !bytes.HasSuffix(data, []byte("\n")) {
			data = append(data, '\n')
		}
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write inventory: %w", err)
	}
	return nil
}

func marshalYAML(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// durationString writes whole seconds as "60s" and anything else as Go
// prints it.
func durationString(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}
