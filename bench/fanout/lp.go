package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"

	"github.com/certpush/certpush/internal/testfleet"
)

// The least-privilege path (-lp): what we tell users to deploy. Each host
// also lets in a second key for the same push account, limited by
// authorized_keys to the shipped forced command
// (hooks/certnode-forced-command, --no-sftp), which runs a root-owned
// certnode with a root-owned config through `sudo -n` as the shipped
// sudoers rule (hooks/sudoers.certnode, with this run's paths) allows.
// That certnode has its own root (root-owned) and incoming, so the two
// paths never share files; the push account can write neither root.
const (
	mFloorLP = "floor-lp"
	mPushLP  = "push-lp"
	mRerunLP = "rerun-lp"
)

func init() {
	methodTitle[mFloorLP] = "least privilege floor: same account, the forced-command key, 1 connection/host, one refused command"
	methodTitle[mPushLP] = "least privilege: certpush push + install (forced command, sudo -n, root's certnode)"
	methodTitle[mRerunLP] = "least privilege: certpush push, unchanged"
}

// lpState is the least-privilege setup.
type lpState struct {
	dir      string // root-owned: certnode, wrapper, configs
	identity string
	sudoers  string
	cfg      *ssh.ClientConfig
	roots    map[string]string // host name -> its root-owned certnode root
}

// lpRoot is the certnode root of host for method m.
func (b *bench) lpRoot(m string, h *testfleet.Host) string {
	if b.lp != nil && (m == mPushLP || m == mRerunLP) {
		return b.lp.roots[h.Name]
	}
	return h.Root
}

func (b *bench) setupLP() (err error) {
	for _, tool := range []string{"sudo", "visudo"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("least privilege path: %w (install sudo)", err)
		}
	}
	forced, err := os.ReadFile(filepath.Join(b.c.hooks, "certnode-forced-command"))
	if err != nil {
		return err
	}
	shipped, err := os.ReadFile(filepath.Join(b.c.hooks, "sudoers.certnode"))
	if err != nil {
		return err
	}
	lp := &lpState{dir: filepath.Join(b.dir, "lp"), roots: map[string]string{}}
	if err := os.Mkdir(lp.dir, 0o755); err != nil {
		return err
	}
	bin := filepath.Join(lp.dir, "certnode")
	if out, err := exec.Command("cp", b.c.certnode, bin).CombinedOutput(); err != nil {
		return fmt.Errorf("copy certnode: %v: %s", err, out)
	}
	wrapper := filepath.Join(lp.dir, "certnode-forced-command")
	if err := os.WriteFile(wrapper, forced, 0o755); err != nil {
		return err
	}
	// The push key of this path: a second key for the same account.
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block, err := ssh.MarshalPrivateKey(priv, "certpush bench least privilege")
	if err != nil {
		return err
	}
	lp.identity = filepath.Join(lp.dir, "id_ed25519")
	if err := os.WriteFile(lp.identity, pem.EncodeToMemory(block), 0o600); err != nil {
		return err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return err
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	// The account's fleet key and client config stay; the same
	// identity file must be readable by certpush (run as root here).
	if lp.cfg, err = b.fleet.ClientConfig(); err != nil {
		return err
	}
	lp.cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(signer)}

	// sudoers: the shipped rule with this run's binary and config paths.
	configRE := regexp.QuoteMeta(lp.dir) + `/node-[0-9]+\.yaml`
	rule := string(shipped)
	rule = strings.ReplaceAll(rule, "/usr/local/bin/certnode", bin)
	rule = strings.ReplaceAll(rule, `/etc/certnode/certnode\.yaml`, configRE)
	rule = strings.ReplaceAll(rule, "certsync ALL", b.fleet.User+" ALL")
	if rule == string(shipped) || !strings.Contains(rule, configRE) {
		return errors.New("sudoers.certnode: nothing to adapt")
	}
	lp.sudoers = filepath.Join("/etc/sudoers.d", "certpush-bench-"+filepath.Base(b.dir)[len("certpush-bench-"):])
	if err := os.WriteFile(lp.sudoers, []byte(rule), 0o440); err != nil {
		return err
	}
	b.lp = lp
	if out, err := exec.Command("visudo", "-cf", lp.sudoers).CombinedOutput(); err != nil {
		return fmt.Errorf("visudo: %v: %s", err, out)
	}

	for _, h := range b.fleet.Hosts {
		root := filepath.Join(h.Dir, "lproot")
		incoming := filepath.Join(h.Dir, "lpincoming")
		if err := os.Mkdir(root, 0o755); err != nil {
			return err
		}
		if err := os.Mkdir(incoming, 0o755); err != nil {
			return err
		}
		if err := os.Chown(incoming, b.fleet.UID, b.fleet.GID); err != nil {
			return err
		}
		lp.roots[h.Name] = root
		// Root's config: the fleet's, with the root and incoming of this
		// path.
		data, err := os.ReadFile(h.CertnodeConfig)
		if err != nil {
			return err
		}
		var nc map[string]any
		if err := yaml.Unmarshal(data, &nc); err != nil {
			return err
		}
		nc["root"], nc["incoming"] = root, incoming
		if data, err = yaml.Marshal(nc); err != nil {
			return err
		}
		config := filepath.Join(lp.dir, h.Name+".yaml")
		if err := os.WriteFile(config, data, 0o644); err != nil {
			return err
		}
		ak := filepath.Join(h.Dir, "ssh", "authorized_keys")
		line := fmt.Sprintf("restrict,command=\"%s --certnode %s --config %s --no-sftp\" %s\n", wrapper, bin, config, pub)
		f, err := os.OpenFile(ak, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString(line)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) closeLP() {
	if b.lp != nil && b.lp.sudoers != "" {
		os.Remove(b.lp.sudoers)
	}
}

// lpInventory rewrites the inventory of size n for the least-privilege
// path: its key, the shipped example's command (plain certnode; the
// forced command adds sudo and root's config) and its incoming.
func (b *bench) lpInventory(n int) (string, error) {
	data, err := os.ReadFile(b.inventory(n))
	if err != nil {
		return "", err
	}
	var inv map[string]any
	if err := yaml.Unmarshal(data, &inv); err != nil {
		return "", err
	}
	inv["ssh"].(map[string]any)["identity"] = b.lp.identity
	for name, h := range inv["hosts"].(map[string]any) {
		hm := h.(map[string]any)
		hm["command"] = "certnode"
		hm["incoming"] = filepath.Join(b.fleet.Host(name).Dir, "lpincoming")
	}
	if data, err = yaml.Marshal(inv); err != nil {
		return "", err
	}
	path := filepath.Join(b.dir, fmt.Sprintf("certpush-lp-%d.yaml", n))
	return path, os.WriteFile(path, data, 0o644)
}

// floorLP opens one connection per host with the forced-command key and
// runs `true`, which the forced command refuses: the least any command
// costs this account.
func (b *bench) floorLP(hosts []*testfleet.Host) error {
	sem := make(chan struct{}, b.c.parallel)
	errs := make(chan error, len(hosts))
	for _, h := range hosts {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			c, err := ssh.Dial("tcp", h.SSHAddr(), b.lp.cfg)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			s, err := c.NewSession()
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			var stderr bytes.Buffer
			s.Stderr = &stderr
			err = s.Run("true")
			var ee *ssh.ExitError
			if !errors.As(err, &ee) || ee.ExitStatus() != 1 || !strings.Contains(stderr.String(), "refused") {
				errs <- fmt.Errorf("%s: the forced command did not refuse `true`: %v %q", h.Name, err, stderr.String())
				return
			}
			errs <- nil
		}()
	}
	var all []error
	for range hosts {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}
