from strokeagent.cli.main import main

main()
