from gateway.mockserver.cli import main

main()
