from mapmesh.cli.main import main

main()
