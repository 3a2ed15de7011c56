module example.com/rcross-go-example

go 1.19
