module podvirt.io/bench/loadgen

go 1.22
