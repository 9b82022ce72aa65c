package targets_test

import (
	"crypto/sha1" //nolint:gosec // the SLB reports SHA-1 fingerprints
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/certpush/certpush/internal/verify"
)

// The stand-ins for the aws and aliyun CLIs: this test binary, linked
// under those names into a directory put first on PATH. Each call is
// appended to $FAKECLOUD_DIR/calls (one JSON argv a line) and answered
// from $FAKECLOUD_DIR/state.json with the JSON shapes of the real APIs.

// cloud is the stand-in's state.
type cloud struct {
	Listeners     map[string]string       `json:"listeners"`     // ELBv2 listener ARN -> ACM certificate ARN
	ACM           map[string]string       `json:"acm"`           // ACM ARN -> certificate PEM
	IAM           map[string]iamCert      `json:"iam"`           // IAM name -> certificate
	Distributions map[string]distribution `json:"distributions"` // CloudFront id -> config
	SLBListeners  map[string]string       `json:"slb_listeners"` // "lb:port" -> server certificate id
	SLBCerts      map[string]slbCert      `json:"slb_certs"`     // id -> certificate
	Seq           int                     `json:"seq"`
}

type iamCert struct {
	ID, Path, Body string
}

type distribution struct {
	ETag   string
	Config map[string]any
}

type slbCert struct {
	Name, Fingerprint string
}

func fakeCLI(name string, args []string) int {
	dir := os.Getenv("FAKECLOUD_DIR")
	line, _ := json.Marshal(append([]string{name}, args...))
	f, err := os.OpenFile(filepath.Join(dir, "calls"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	f.Write(append(line, '\n'))
	f.Close()
	var c cloud
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err == nil {
		err = json.Unmarshal(data, &c)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakecloud state:", err)
		return 1
	}
	var out any
	if name == "aws" {
		out, err = c.aws(args)
	} else {
		out, err = c.aliyun(args)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 254
	}
	data, _ = json.MarshalIndent(c, "", " ")
	if err := os.WriteFile(filepath.Join(dir, "state.json"), data, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	enc.Encode(out)
	return 0
}

// flags reads --name value pairs; words without -- are the command.
func flags(args []string) (words []string, fl map[string]string) {
	fl = map[string]string{}
	for i := 0; i < len(args); i++ {
		if v, ok := strings.CutPrefix(args[i], "--"); ok {
			if i+1 < len(args) && !isFlag(args[i+1]) {
				fl[v] = args[i+1]
				i++
			} else {
				fl[v] = ""
			}
			continue
		}
		words = append(words, args[i])
	}
	return words, fl
}

// isFlag: --Name, not a value such as "-----BEGIN CERTIFICATE-----".
func isFlag(s string) bool {
	return len(s) > 2 && s[:2] == "--" && (s[2] >= 'a' && s[2] <= 'z' || s[2] >= 'A' && s[2] <= 'Z')
}

func readArg(v string) (string, error) {
	for _, pre := range []string{"fileb://", "file://"} {
		if p, ok := strings.CutPrefix(v, pre); ok {
			data, err := os.ReadFile(p)
			return string(data), err
		}
	}
	return "", fmt.Errorf("want a file:// or fileb:// argument, got %.40q", v)
}

func (c *cloud) next(prefix string) string {
	c.Seq++
	return fmt.Sprintf("%s%04d", prefix, c.Seq)
}

func (c *cloud) aws(args []string) (any, error) {
	words, fl := flags(args)
	if fl["output"] != "json" {
		return nil, fmt.Errorf("want --output json")
	}
	if len(words) != 2 {
		return nil, fmt.Errorf("want SERVICE OPERATION, got %q", words)
	}
	listener := func(arn string) any {
		return map[string]any{"Listeners": []any{map[string]any{"ListenerArn": arn, "Certificates": []any{map[string]any{"CertificateArn": c.Listeners[arn]}}}}}
	}
	switch words[0] + " " + words[1] {
	case "elbv2 describe-listeners":
		if _, ok := c.Listeners[fl["listener-arns"]]; !ok {
			return nil, fmt.Errorf("ListenerNotFound: %s", fl["listener-arns"])
		}
		return listener(fl["listener-arns"]), nil
	case "elbv2 modify-listener":
		arn := strings.TrimPrefix(fl["certificates"], "CertificateArn=")
		if _, ok := c.ACM[arn]; !ok {
			return nil, fmt.Errorf("CertificateNotFound: %s", arn)
		}
		c.Listeners[fl["listener-arn"]] = arn
		return listener(fl["listener-arn"]), nil
	case "acm get-certificate":
		body, ok := c.ACM[fl["certificate-arn"]]
		if !ok {
			return nil, fmt.Errorf("ResourceNotFoundException")
		}
		return map[string]any{"Certificate": body, "CertificateChain": ""}, nil
	case "acm import-certificate":
		body, err := readArg(fl["certificate"])
		if err != nil {
			return nil, err
		}
		if key, err := readArg(fl["private-key"]); err != nil || !strings.Contains(key, "PRIVATE KEY") {
			return nil, fmt.Errorf("bad private key: %v", err)
		}
		arn := c.next("arn:aws:acm:eu-west-1:123456789012:certificate/")
		c.ACM[arn] = body
		return map[string]any{"CertificateArn": arn}, nil
	case "iam get-server-certificate":
		ic, ok := c.IAM[fl["server-certificate-name"]]
		if !ok {
			return nil, fmt.Errorf("NoSuchEntity: %s", fl["server-certificate-name"])
		}
		return map[string]any{"ServerCertificate": map[string]any{
			"ServerCertificateMetadata": map[string]any{"ServerCertificateName": fl["server-certificate-name"], "ServerCertificateId": ic.ID, "Path": ic.Path},
			"CertificateBody":           ic.Body,
		}}, nil
	case "iam upload-server-certificate":
		body, err := readArg(fl["certificate-body"])
		if err != nil {
			return nil, err
		}
		if _, err := readArg(fl["private-key"]); err != nil {
			return nil, err
		}
		name := fl["server-certificate-name"]
		if _, dup := c.IAM[name]; dup {
			return nil, fmt.Errorf("EntityAlreadyExists: %s", name)
		}
		ic := iamCert{ID: c.next("ASCA"), Path: fl["path"], Body: body}
		c.IAM[name] = ic
		return map[string]any{"ServerCertificateMetadata": map[string]any{"ServerCertificateName": name, "ServerCertificateId": ic.ID, "Path": ic.Path}}, nil
	case "iam list-server-certificates":
		var list []any
		for name, ic := range c.IAM {
			if strings.HasPrefix(ic.Path, fl["path-prefix"]) {
				list = append(list, map[string]any{"ServerCertificateName": name, "ServerCertificateId": ic.ID, "Path": ic.Path})
			}
		}
		return map[string]any{"ServerCertificateMetadataList": list}, nil
	case "cloudfront get-distribution-config":
		d, ok := c.Distributions[fl["id"]]
		if !ok {
			return nil, fmt.Errorf("NoSuchDistribution: %s", fl["id"])
		}
		return map[string]any{"ETag": d.ETag, "DistributionConfig": d.Config}, nil
	case "cloudfront update-distribution":
		d, ok := c.Distributions[fl["id"]]
		if !ok || fl["if-match"] != d.ETag {
			return nil, fmt.Errorf("PreconditionFailed: ETag %q", fl["if-match"])
		}
		raw, err := readArg(fl["distribution-config"])
		if err != nil {
			return nil, err
		}
		var cfg map[string]any
		if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
			return nil, err
		}
		d.Config, d.ETag = cfg, c.next("E")
		c.Distributions[fl["id"]] = d
		return map[string]any{"ETag": d.ETag, "Distribution": map[string]any{"Id": fl["id"], "DistributionConfig": cfg}}, nil
	}
	return nil, fmt.Errorf("the stand-in does not know %q", words)
}

func (c *cloud) aliyun(args []string) (any, error) {
	words, fl := flags(args)
	if len(words) != 2 || words[0] != "slb" || fl["RegionId"] == "" {
		return nil, fmt.Errorf("want slb OPERATION ... --RegionId R, got %q", args)
	}
	key := fl["LoadBalancerId"] + ":" + fl["ListenerPort"]
	switch words[1] {
	case "DescribeLoadBalancerHTTPSListenerAttribute":
		id, ok := c.SLBListeners[key]
		if !ok {
			return nil, fmt.Errorf("InvalidParameter: listener %s", key)
		}
		return map[string]any{"ListenerPort": fl["ListenerPort"], "ServerCertificateId": id, "Status": "running"}, nil
	case "DescribeServerCertificates":
		var list []any
		for id, sc := range c.SLBCerts {
			if fl["ServerCertificateId"] == "" || fl["ServerCertificateId"] == id {
				list = append(list, map[string]any{"ServerCertificateId": id, "ServerCertificateName": sc.Name, "Fingerprint": sc.Fingerprint})
			}
		}
		return map[string]any{"ServerCertificates": map[string]any{"ServerCertificate": list}}, nil
	case "UploadServerCertificate":
		blk, _ := pem.Decode([]byte(fl["ServerCertificate"]))
		if blk == nil || !strings.Contains(fl["PrivateKey"], "PRIVATE KEY") {
			return nil, fmt.Errorf("InvalidServerCertificate")
		}
		id := c.next("1231579085529123_")
		c.SLBCerts[id] = slbCert{Name: fl["ServerCertificateName"], Fingerprint: slbFingerprint(blk.Bytes)}
		return map[string]any{"ServerCertificateId": id, "Fingerprint": c.SLBCerts[id].Fingerprint}, nil
	case "SetLoadBalancerHTTPSListenerAttribute":
		if _, ok := c.SLBListeners[key]; !ok {
			return nil, fmt.Errorf("InvalidParameter: listener %s", key)
		}
		if _, ok := c.SLBCerts[fl["ServerCertificateId"]]; !ok {
			return nil, fmt.Errorf("ServerCertificateId.NotFound")
		}
		c.SLBListeners[key] = fl["ServerCertificateId"]
		return map[string]any{"RequestId": "365F4154-92F6-4AE4-92F8-7FF34B540710"}, nil
	}
	return nil, fmt.Errorf("the stand-in does not know %q", words)
}

// slbFingerprint is the SHA-1 fingerprint as the SLB shows it: lowercase
// hex pairs joined by colons.
func slbFingerprint(der []byte) string {
	s := sha1.Sum(der) //nolint:gosec
	return strings.ToLower(verify.Colons(s[:]))
}
