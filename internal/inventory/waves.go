package inventory

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/certpush/certpush/internal/yamlconf"
)

// WaveRest names, in waves:, every host of the certificate that no other
// wave names.
const WaveRest = "rest"

// Wave is one step of a rollout: hosts that are all finished and
// verified before the next wave starts.
type Wave struct {
	Name  string // "1", "2", ... for waves:, "canary" and "rest" for canary:
	Hosts []Host
}

// Names returns the names of the wave's hosts.
func (w Wave) Names() []string {
	out := make([]string, len(w.Hosts))
	for i, h := range w.Hosts {
		out[i] = h.Name
	}
	return out
}

// Waves returns the rollout of the certificate called cert as configured:
// its waves: (each host in the first wave that names it or one of its
// groups; rest holds every host no wave names), or, without waves:, the
// canary hosts then the rest (one wave "all" when there are no canaries).
// Hosts are resolved as by HostsFor; empty waves are kept, so that wave
// numbers stay those of the file.
func (c *Config) Waves(cert string) ([]Wave, error) {
	ct, err := c.Cert(cert)
	if err != nil {
		return nil, err
	}
	hosts, err := c.HostsFor(cert)
	if err != nil {
		return nil, err
	}
	if len(ct.Waves) == 0 {
		n := 0
		for n < len(hosts) && slices.Contains(ct.Canary, hosts[n].Name) {
			n++
		}
		if n == 0 {
			return []Wave{{Name: "all", Hosts: hosts}}, nil
		}
		return []Wave{{Name: "canary", Hosts: hosts[:n]}, {Name: "rest", Hosts: hosts[n:]}}, nil
	}
	return c.wavesOf(ct, hosts), nil
}

// wavesOf splits hosts (in delivery order) into ct's waves.
func (c *Config) wavesOf(ct *Cert, hosts []Host) []Wave {
	waves := make([]Wave, len(ct.Waves))
	placed := map[string]bool{}
	rest := -1
	for i, names := range ct.Waves {
		waves[i].Name = strconv.Itoa(i + 1)
		for _, ref := range names {
			if ref == WaveRest {
				rest = i
				continue
			}
			for _, h := range hosts {
				if placed[h.Name] {
					continue
				}
				if h.Name == ref || c.inGroup(h.Name, ref) {
					placed[h.Name] = true
					waves[i].Hosts = append(waves[i].Hosts, h)
				}
			}
		}
	}
	if rest >= 0 {
		for _, h := range hosts {
			if !placed[h.Name] {
				waves[rest].Hosts = append(waves[rest].Hosts, h)
			}
		}
	}
	return waves
}

// inGroup reports whether the configured host name is a member of group.
func (c *Config) inGroup(name, group string) bool {
	h, ok := c.Hosts[name]
	return ok && h != nil && slices.Contains(h.Groups, group)
}

// waves parses a certificate's waves: a list whose items are a host or
// group name (or rest), or a list of them.
func (p *parser) waves(n *yaml.Node, key string, c *Cert) []*yaml.Node {
	items, _ := p.Seq(n, key)
	var nodes []*yaml.Node
	for i, it := range items {
		wkey := fmt.Sprintf("%s[%d]", key, i)
		it = yamlconf.Deref(it)
		var names []*yaml.Node
		if it.Kind == yaml.SequenceNode {
			names, _ = p.Items(it, wkey)
		} else if v, ok := p.NonEmpty(it, wkey); ok && v != "" {
			names = []*yaml.Node{it}
		}
		var wave []string
		for _, nm := range names {
			if !slices.Contains(wave, nm.Value) {
				wave = append(wave, nm.Value)
				nodes = append(nodes, nm)
			}
		}
		c.Waves = append(c.Waves, wave)
	}
	return nodes
}

// checkWaves checks c's waves (names as the nodes given, under key):
// every name is a host or group of c, or rest (once); no name twice; and
// without rest, every host of c is in some wave.
func (p *parser) checkWaves(c *Cert, keyNode *yaml.Node, nodes []*yaml.Node, key string, hostsFileOK bool, cfg *Config) {
	if len(c.Waves) == 0 {
		return
	}
	if len(c.Canary) > 0 {
		p.Errorf(keyNode, "%s: waves and canary together: canary is the two-wave case, write it as waves: [[%s], [rest]]", key, strings.Join(c.Canary, ", "))
	}
	members := cfg.memberSet(c)
	seen := map[string]bool{}
	rest := false
	for _, nm := range nodes {
		v := nm.Value
		switch {
		case seen[v]:
			p.Errorf(nm, "%s: %q is in two waves", key, v)
			continue
		case v == WaveRest:
			rest = true
		case members[v]:
		case cfg.Hosts[v] == nil && cfg.groupOf(members, v):
		case !hostsFileOK:
		default:
			p.Errorf(nm, "%s: %q is not a host or group of %s", key, v, c.Name)
		}
		seen[v] = true
	}
	if rest || !hostsFileOK {
		return
	}
	var missing []string
	for _, w := range cfg.wavesOf(c, cfg.resolve(c)) {
		for _, h := range w.Hosts {
			members[h.Name] = false
		}
	}
	for _, h := range cfg.resolve(c) {
		if members[h.Name] {
			missing = append(missing, h.Name)
		}
	}
	if len(missing) > 0 {
		p.Errorf(keyNode, "%s: %s in no wave: add them to one, or end with [rest]", key, strings.Join(missing, ", "))
	}
}

// groupOf reports whether some host among members is in group.
func (c *Config) groupOf(members map[string]bool, group string) bool {
	for h := range members {
		if c.inGroup(h, group) {
			return true
		}
	}
	return false
}
