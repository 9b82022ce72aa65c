# Hosts added by the autoscaler; one [user@]host[:port] a line.
beta-01
edge-01.example.com
root@edge-02.example.com:2022   # legacy box

[2001:db8::31]:22
2001:db8::32
web-01
