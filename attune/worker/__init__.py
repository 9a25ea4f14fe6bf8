"""The Celery side: the app and its bootsteps, the tasks, the broker transport."""
