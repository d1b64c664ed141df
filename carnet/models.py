"""Every component's tables, gathered for Alembic (``carnet.migrations``)."""

from carnet.db import Base
from carnet.directory import models as _directory_models  # noqa: F401  (registers the tables)
from carnet.mailbox import models as _mailbox_models  # noqa: F401  (registers the tables)
from carnet.mta import models as _mta_models  # noqa: F401  (registers the tables)
from carnet.pki import models as _pki_models  # noqa: F401  (registers the tables)
from carnet.webmail import models as _webmail_models  # noqa: F401  (registers the tables)

metadata = Base.metadata
