package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/certpush/certpush/internal/inventory"
	"github.com/certpush/certpush/internal/verify"
)

// waveStatus is the alignment of one wave of a certificate's rollout.
type waveStatus struct {
	Cert      string   `json:"cert"`
	Wave      string   `json:"wave"`
	Hosts     []string `json:"hosts"`
	Endpoints int      `json:"endpoints"`
	Aligned   int      `json:"aligned"`
	// Unchecked are hosts without a verify endpoint (exec targets whose
	// current verb only certpush push runs).
	Unchecked []string `json:"unchecked,omitempty"`
}

// waveStatuses sums reports up per wave, for the certificates among names
// (default: all) that have waves: configured.
func waveStatuses(cfg *inventory.Config, names []string, reports []verify.Report) []waveStatus {
	if len(names) == 0 {
		names = cfg.CertOrder
	}
	type key struct{ cert, host string }
	byHost := map[key][]verify.Report{}
	for _, r := range reports {
		k := key{r.Cert, r.Host}
		byHost[k] = append(byHost[k], r)
	}
	var out []waveStatus
	for _, name := range names {
		ct, err := cfg.Cert(name)
		if err != nil || len(ct.Waves) == 0 {
			continue
		}
		waves, err := cfg.Waves(name)
		if err != nil {
			continue
		}
		for _, w := range waves {
			ws := waveStatus{Cert: name, Wave: w.Name, Hosts: w.Names()}
			for _, h := range w.Hosts {
				rs := byHost[key{name, h.Name}]
				if len(rs) == 0 {
					ws.Unchecked = append(ws.Unchecked, h.Name)
				}
				for _, r := range rs {
					ws.Endpoints++
					if r.State == verify.Aligned {
						ws.Aligned++
					}
				}
			}
			out = append(out, ws)
		}
	}
	return out
}

// printWaves prints the per-wave table after status's endpoint table.
func printWaves(w io.Writer, waves []waveStatus) error {
	if len(waves) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CERT\tWAVE\tALIGNED\tTARGETS")
	for _, ws := range waves {
		targets := strings.Join(ws.Hosts, ", ")
		if len(ws.Unchecked) > 0 {
			targets += " (no endpoint: " + strings.Join(ws.Unchecked, ", ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\n", ws.Cert, ws.Wave, ws.Aligned, ws.Endpoints, targets)
	}
	return tw.Flush()
}
