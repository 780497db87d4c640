module acme-dl/tests/go-pair

go 1.19
