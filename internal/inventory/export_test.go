package inventory

import "github.com/certpush/certpush/internal/yamlconf"

// ParseHostList parses a host-list file on its own (see parseHostList),
// for tests: the hosts, or every problem as an *Error, joined.
func ParseHostList(path string, data []byte, defaults SSH) ([]Host, error) {
	var ps yamlconf.Problems
	entries := parseHostList(path, data, defaults, &ps)
	if err := ps.Err(); err != nil {
		return nil, err
	}
	hosts := make([]Host, len(entries))
	for i := range entries {
		hosts[i] = entries[i].host()
	}
	return hosts, nil
}

// parseMode is Parse, reading the hosts: block in batches of entries when
// chunked is set and the layout allows it; split says whether it did.
func parseMode(path string, data []byte, chunked bool) (cfg *Config, split bool, err error) {
	p := &parser{Checker: yamlconf.Checker{File: path}, chunked: chunked}
	cfg = p.parse(data)
	if err := p.Err(); err != nil {
		return nil, p.split, err
	}
	return cfg, p.split, nil
}
