"""``python -m llm2embed.server MODEL [--port 8080] ...``"""

from .main import main

main()
