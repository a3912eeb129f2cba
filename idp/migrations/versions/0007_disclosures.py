"""disclosure ledger, and when periodic tasks last ran

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-14 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'disclosures',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('user_id', sa.String(length=32), nullable=False),
        sa.Column('client_id', sa.String(length=64), nullable=False),
        sa.Column('session_id', sa.String(length=43), nullable=False),
        sa.Column('purpose', sa.String(length=16), nullable=False),
        sa.Column('claims', sa.String(length=400), nullable=False),
        sa.Column('national_id', sa.Boolean(), nullable=False),
        sa.Column('verified_claims', sa.Boolean(), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('first_at', sa.DateTime(), nullable=False),
        sa.Column('last_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_disclosures_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_disclosures')),
    )
    with op.batch_alter_table('disclosures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_disclosures_last_at'), ['last_at'], unique=False)
        batch_op.create_index('ix_disclosures_user_id_last_at', ['user_id', 'last_at'], unique=False)
        batch_op.create_index(
            'uq_disclosures_fold', ['user_id', 'client_id', 'session_id', 'purpose', 'claims'], unique=True
        )

    op.create_table(
        'housekeeping_runs',
        sa.Column('task', sa.String(length=64), nullable=False),
        sa.Column('ran_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('task', name=op.f('pk_housekeeping_runs')),
    )


def downgrade():
    op.drop_table('housekeeping_runs')
    with op.batch_alter_table('disclosures', schema=None) as batch_op:
        batch_op.drop_index('uq_disclosures_fold')
        batch_op.drop_index('ix_disclosures_user_id_last_at')
        batch_op.drop_index(batch_op.f('ix_disclosures_last_at'))

    op.drop_table('disclosures')
