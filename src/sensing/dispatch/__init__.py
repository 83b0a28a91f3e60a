from sensing.dispatch.router import Dispatcher, DispatchPolicy

__all__ = ["DispatchPolicy", "Dispatcher"]
