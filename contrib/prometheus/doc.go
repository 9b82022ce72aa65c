// Package prometheus holds the alerting rules shipped for certpush's and
// certnode's metrics (certpush.rules.yml); its test checks them with
// promtool.
package prometheus
