"""The release side: build a release once (wheels for the hosts' interpreter, the app's wheel,
a content-addressed cache), then deploy, roll back, inspect, plan and promote it across an
environment's hosts through deploy.remote.target.
"""
